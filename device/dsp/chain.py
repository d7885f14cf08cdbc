"""The block registry (``BLOCKS``), parsing a chain from its manifest and command-line forms, and a chain
compiled for one input."""

from __future__ import annotations

import math
import time
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from device.dsp.base import Array, Block, ChainError, Fn, Stage
from device.dsp.filters import Detrend, HighPass, LowPass, Resample
from device.dsp.spectral import BandEnergies, Features, LogMel


@dataclass(frozen=True)
class BlockInfo:
    block: type[Block]
    description: str


BLOCKS: dict[str, BlockInfo] = {
    cls.name: BlockInfo(cls, cls.description)
    for cls in (HighPass, LowPass, Detrend, Resample, BandEnergies, Features, LogMel)
}


def _parse_value(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _parse_value(value, options[0], key)
        for a in options:
            if isinstance(value, a) and not isinstance(value, bool):
                return value
        raise ChainError(f"expected {' or '.join(a.__name__ for a in options)}, got {value!r}", key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ChainError(f"expected a list, got {type(value).__name__}", key)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(v, item, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ChainError(f"expected {len(args)} values, got {len(value)}", key)
        return tuple(_parse_value(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ChainError(f"expected true or false, got {type(value).__name__}", key)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChainError(f"expected an integer, got {type(value).__name__}", key)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ChainError(f"expected a finite number, got {value!r}", key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ChainError(f"expected a string, got {type(value).__name__}", key)
        return value
    raise ChainError(f"unsupported parameter type {hint}", key)  # pragma: no cover - a block's own bug


def parse_block(obj: Mapping[str, Any]) -> Block:
    """One block from its manifest/TOML form ``{"block": NAME, param: value, ...}``."""
    if not isinstance(obj, Mapping):
        raise ChainError(f"expected an object with a 'block' name, got {type(obj).__name__}")
    name = obj.get("block")
    if not isinstance(name, str):
        raise ChainError("missing (required): the block's name, e.g. \"highpass\"", "block")
    info = BLOCKS.get(name)
    if info is None:
        raise ChainError(f"{name!r} is not a DSP block this spinal knows (it knows {', '.join(BLOCKS)})", "block")
    cls = info.block
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in obj.items():
        if key == "block":
            continue
        if key not in known:
            raise ChainError(f"{name} has no parameter {key!r} (it has {', '.join(sorted(known))})", key)
        kwargs[key] = _parse_value(value, hints[key], key)
    block = cls(**kwargs)
    block.check()
    return block


def parse_chain(items: Sequence[Any]) -> tuple[Block, ...]:
    """A chain from its manifest form; a :class:`ChainError` carries the block's index."""
    if not isinstance(items, list | tuple):
        raise ChainError(f"expected a list of blocks, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse_block(item))
        except ChainError as exc:
            raise ChainError(exc.message, exc.key, i) from None
    return tuple(out)


def _literal(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text.startswith("["):
        import json

        try:
            return json.loads(text)
        except ValueError:
            raise ChainError(f"{text!r} is not a JSON list") from None
    return text


def parse_block_text(text: str) -> dict[str, Any]:
    """The command-line spelling ``"highpass:cutoff_hz=0.3,order=2"`` (lists in JSON, ``channels=[0,1]``)
    as the manifest's object form (not yet checked: pass it to :func:`parse_block`)."""
    name, _, rest = text.partition(":")
    out: dict[str, Any] = {"block": name.strip()}
    depth, part, parts = 0, "", []
    for ch in rest:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    if part.strip():
        parts.append(part)
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            raise ChainError(f"{p.strip()!r} is not KEY=VALUE (write blocks like highpass:cutoff_hz=0.3,order=2)")
        out[key.strip()] = _literal(value)
    return out


def chain_to_list(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """The manifest form of a chain."""
    return [b.params() for b in blocks]




@dataclass(frozen=True)
class Step:
    block: Block
    fn: Fn = field(repr=False)
    before: Stage
    after: Stage


@dataclass(frozen=True)
class Compiled:
    """A chain compiled for windows of ``first`` (``steps`` in order); call it on one ``(T, C)`` window."""

    first: Stage
    last: Stage
    steps: tuple[Step, ...]

    @property
    def last_shape(self) -> tuple[int, int]:
        return (self.last.length, self.last.channels)

    def __call__(self, window: Array) -> Array:
        x = np.asarray(window, dtype=np.float64)
        if x.shape != (self.first.length, self.first.channels):
            raise ValueError(f"the chain takes a window of {self.first.length} x {self.first.channels}, "
                             f"got {list(x.shape)}")
        for step in self.steps:
            x = step.fn(x)
        return x

    def timed(self, window: Array, repeats: int = 200) -> list[tuple[Block, float]]:
        """Median µs per window of each block (each fed its real input)."""
        x = np.asarray(window, dtype=np.float64)
        out = []
        for step in self.steps:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                step.fn(x)
                times.append(time.perf_counter_ns() - t0)
            out.append((step.block, float(np.median(times)) / 1000.0))
            x = step.fn(x)
        return out


def compile_chain(blocks: Sequence[Block], first: Stage) -> Compiled:
    """Compile ``blocks`` for windows of ``first``; a :class:`ChainError` names the block's index."""
    steps = []
    stage = first
    for i, block in enumerate(blocks):
        try:
            after = block.out(stage)
            fn = block.compile(stage)
        except ChainError as exc:
            raise ChainError(f"{block.name}: {exc.message}", exc.key, i) from None
        steps.append(Step(block, fn, stage, after))
        stage = after
    return Compiled(first, stage, tuple(steps))


def describe(blocks: Sequence[Block]) -> str:
    """``highpass(cutoff_hz=0.3) -> features(features=['rms'])``, or ``none``."""
    return " -> ".join(str(b) for b in blocks) or "none"
