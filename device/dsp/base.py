"""The chain's foundations: the error type, the :class:`Stage` that flows between blocks, the :class:`Block` base."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

Array = np.ndarray[Any, Any]
Fn = Callable[[Array], Array]

class ChainError(ValueError):
    """A bad block or parameter; ``key`` is the path inside the block (``cutoff_hz``), ``index`` the block's."""

    def __init__(self, message: str, key: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.index = index

    def where(self, prefix: str) -> str:
        """``prefix[index].key: message``."""
        path = prefix
        if self.index is not None:
            path += f"[{self.index}]"
        if self.key:
            path += f".{self.key}"
        return f"{path}: {self.message}"


@dataclass(frozen=True)
class Stage:
    """What flows between blocks: ``length`` time steps (or frames, bands...) of ``channels`` values at
    ``rate_hz`` (``None`` once time is gone), with channel names when they are still meaningful."""

    length: int
    channels: int
    rate_hz: float | None
    names: tuple[str, ...] = ()


def need_rate(stage: Stage, block: str) -> float:
    if stage.rate_hz is None:
        raise ChainError(f"{block} needs a sample rate: give the input sample_rate_hz (and put {block} before "
                         "any block that ends the time axis)")
    return stage.rate_hz


def channel_index(stage: Stage, channels: tuple[int | str, ...], block: str) -> Array:
    if not channels:
        return np.arange(stage.channels)
    out = []
    for ch in channels:
        if isinstance(ch, str):
            if ch not in stage.names:
                raise ChainError(f"no channel {ch!r} here (channels: {', '.join(stage.names) or 'unnamed'})",
                                 "channels")
            out.append(stage.names.index(ch))
        else:
            if not 0 <= ch < stage.channels:
                raise ChainError(f"channel index {ch} is outside 0..{stage.channels - 1}", "channels")
            out.append(ch)
    return np.asarray(sorted(set(out)), dtype=np.int64)


@dataclass(frozen=True)
class Block:
    """One DSP block. Subclasses declare their parameters as dataclass fields (all with defaults)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def check(self) -> None:
        """Parameter checks that need no input (raise :class:`ChainError` naming the key)."""

    def out(self, stage: Stage) -> Stage:
        """The stage this block makes from ``stage`` (raises :class:`ChainError`)."""
        return stage

    def compile(self, stage: Stage) -> Fn:
        """A function from a ``(stage.length, stage.channels)`` array to the next stage's array."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters as the manifest stores them (``block`` first; defaults kept, empty ones left out)."""
        out: dict[str, Any] = {"block": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            out[f.name] = _plain(value)
        return out

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params().items() if k != "block")
        return f"{self.name}({args})"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value

