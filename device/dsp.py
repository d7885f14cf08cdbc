"""The preprocessing chain: ordered DSP blocks between a raw sensor window and the model input.

A bundle declares its chain in the manifest, on its first input (``inputs[0].preprocessing``)::

    "preprocessing": [{"block": "highpass", "cutoff_hz": 0.3},
                      {"block": "band_energies", "bands": [[0.5, 2], [2, 5]], "log": true}]

The device (the daemon, the canary, ``spinal verify``) and the host (``spinal convert``, the training
scripts in ``models/``) run the very same code on the very same raw window, so features are computed
once, the same way, everywhere. Numpy only.

**Per window, stateless.** Every block sees one complete window ``(T, C)`` and nothing else: no filter
state is carried from one window to the next. Windows overlap by ``window - hop`` samples and may be
separated by gaps; a stateless block gives a window the same features whatever came before it, so
the host (which cuts windows from a recording) and the device (which cuts them from a live stream)
agree bit for bit. The price is the start of each window: an IIR filter starts from the steady state
of the window's first sample (a constant signal passes a low-pass unchanged and a high-pass as exactly
0), which removes a constant offset (gravity on a still-mounted accelerometer, a zero-g or zero-rate
offset) exactly and leaves a short transient for anything else.

Blocks (``BLOCKS``, one registry): ``highpass``, ``lowpass``, ``detrend``, ``resample``,
``band_energies``, ``features`` and ``logmel``. Each is a frozen dataclass of its parameters; a
block maps a :class:`Stage` (length, channels, sample rate, channel names) to the next one and,
compiled for its input stage, a ``(T, C)`` float64 array to the next array.
"""

from __future__ import annotations

import math
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

Array = np.ndarray[Any, Any]
Fn = Callable[[Array], Array]
MATRIX_MAX_LENGTH = 512  # IIR filters on windows up to this length run as one (T, T) matrix product


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


def _need_rate(stage: Stage, block: str) -> float:
    if stage.rate_hz is None:
        raise ChainError(f"{block} needs a sample rate: give the input sample_rate_hz (and put {block} before "
                         "any block that ends the time axis)")
    return stage.rate_hz


def _channel_index(stage: Stage, channels: tuple[int | str, ...], block: str) -> Array:
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


# --------------------------------------------------------------------------------------------
# IIR filters (first order or a Butterworth biquad), started from the first sample's steady state


def _iir_coefficients(kind: str, cutoff_hz: float, rate_hz: float, order: int) -> tuple[Array, Array]:
    """``(b, a)`` of a first-order (bilinear RC) or second-order Butterworth (bilinear, RBJ) filter."""
    k = math.tan(math.pi * cutoff_hz / rate_hz)
    if order == 1:
        b = np.array([k, k]) / (1 + k) if kind == "lowpass" else np.array([1.0, -1.0]) / (1 + k)
        a = np.array([1.0, (k - 1) / (1 + k)])
        return b, a
    q = 1 / math.sqrt(2)
    norm = 1 / (1 + k / q + k * k)
    b = np.array([k * k, 2 * k * k, k * k]) * norm if kind == "lowpass" else np.array([1.0, -2.0, 1.0]) * norm
    a = np.array([1.0, 2 * (k * k - 1) * norm, (1 - k / q + k * k) * norm])
    return b, a


def _impulse_response(b: Array, a: Array, n: int) -> Array:
    h = np.zeros(n)
    x = np.zeros(n)
    x[0] = 1.0
    for i in range(n):
        acc = sum(b[j] * x[i - j] for j in range(len(b)) if i - j >= 0)
        acc -= sum(a[j] * h[i - j] for j in range(1, len(a)) if i - j >= 0)
        h[i] = acc
    return h


def _iir(kind: str, cutoff_hz: float, order: int, stage: Stage, idx: Array) -> Fn:
    rate = stage.rate_hz or 0.0
    b, a = _iir_coefficients(kind, cutoff_hz, rate, order)
    n = stage.length
    dc = 1.0 if kind == "lowpass" else 0.0  # the output of a constant input in steady state, per unit
    if n <= MATRIX_MAX_LENGTH:
        h = _impulse_response(b, a, n)
        rows = np.arange(n)[:, None] - np.arange(n)[None, :]
        matrix = np.where(rows >= 0, h[np.clip(rows, 0, None)], 0.0)

        def run(x: Array) -> Array:
            out = np.array(x, dtype=np.float64, copy=True)
            sel = out[:, idx]
            x0 = sel[0:1, :]
            out[:, idx] = matrix @ (sel - x0) + dc * x0
            return out
        return run

    return _iir_blocks(b, a, dc, idx)


BLOCK_LENGTH = 256


def _iir_blocks(b: Array, a: Array, dc: float, idx: Array) -> Fn:
    """A long window in blocks of ``BLOCK_LENGTH`` samples: inside a block one matrix product (the filter's
    impulse response), between blocks the filter's state (transposed direct form II, as a state-space model)."""
    order = len(a) - 1
    A = np.zeros((order, order))
    A[:, 0] = -a[1:]
    A[np.arange(order - 1), np.arange(1, order)] = 1.0
    B = b[1:] - a[1:] * b[0]
    C = np.zeros(order)
    C[0] = 1.0
    L = BLOCK_LENGTH
    powers = [np.eye(order)]
    for _ in range(L):
        powers.append(A @ powers[-1])
    h = np.array([b[0]] + [C @ powers[m - 1] @ B for m in range(1, L)])
    rows = np.arange(L)[:, None] - np.arange(L)[None, :]
    T = np.where(rows >= 0, h[np.clip(rows, 0, None)], 0.0)      # x in a block -> y in the block
    S = np.stack([C @ powers[n] for n in range(L)])               # state at the block's start -> y
    F = np.stack([powers[L - 1 - k] @ B for k in range(L)], axis=1)  # x in a block -> state at its end
    AL = powers[L]

    def run(x: Array) -> Array:
        out = np.array(x, dtype=np.float64, copy=True)
        sel = out[:, idx]
        x0 = sel[0:1, :]
        v = sel - x0
        z = np.zeros((order, v.shape[1]))
        y = np.empty_like(v)
        n = len(v)
        for start in range(0, n, L):
            blk = v[start:start + L]
            r = len(blk)
            y[start:start + r] = T[:r, :r] @ blk + S[:r] @ z
            if r == L:
                z = AL @ z + F @ blk
        out[:, idx] = y + dc * x0
        return out
    return run


@dataclass(frozen=True)
class _Filter(Block):
    cutoff_hz: float = 1.0
    order: int = 1
    channels: tuple[int | str, ...] = ()

    def check(self) -> None:
        if not self.cutoff_hz > 0:
            raise ChainError(f"must be > 0 Hz, got {self.cutoff_hz}", "cutoff_hz")
        if self.order not in (1, 2):
            raise ChainError(f"must be 1 (first order) or 2 (Butterworth biquad), got {self.order}", "order")

    def out(self, stage: Stage) -> Stage:
        rate = _need_rate(stage, self.name)
        if self.cutoff_hz >= rate / 2:
            raise ChainError(f"{self.cutoff_hz} Hz is not below the Nyquist frequency {rate / 2:g} Hz of a "
                             f"{rate:g} Hz input", "cutoff_hz")
        _channel_index(stage, self.channels, self.name)
        return stage

    def compile(self, stage: Stage) -> Fn:
        return _iir(self.name, self.cutoff_hz, self.order, stage, _channel_index(stage, self.channels, self.name))


@dataclass(frozen=True)
class HighPass(_Filter):
    """Removes what changes slower than ``cutoff_hz``: gravity and sensor offsets (exactly, for a constant)."""

    name: ClassVar[str] = "highpass"
    description: ClassVar[str] = "high-pass IIR (order 1 or 2), removes gravity and offsets"
    cutoff_hz: float = 0.3


@dataclass(frozen=True)
class LowPass(_Filter):
    """Smooths what changes faster than ``cutoff_hz`` (anti-aliasing before ``resample``, noise)."""

    name: ClassVar[str] = "lowpass"
    description: ClassVar[str] = "low-pass IIR (order 1 or 2)"
    cutoff_hz: float = 5.0


@dataclass(frozen=True)
class Detrend(Block):
    """Removes each channel's window mean (``kind="mean"``) or least-squares line (``"linear"``)."""

    name: ClassVar[str] = "detrend"
    description: ClassVar[str] = "per-window mean or linear trend removal"
    kind: str = "mean"
    channels: tuple[int | str, ...] = ()

    def check(self) -> None:
        if self.kind not in ("mean", "linear"):
            raise ChainError(f"{self.kind!r} is not mean or linear", "kind")

    def out(self, stage: Stage) -> Stage:
        _channel_index(stage, self.channels, self.name)
        return stage

    def compile(self, stage: Stage) -> Fn:
        idx = _channel_index(stage, self.channels, self.name)
        n = stage.length
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        denom = float(np.sum(t * t)) or 1.0
        linear = self.kind == "linear"

        def run(x: Array) -> Array:
            out = np.array(x, dtype=np.float64, copy=True)
            sel = out[:, idx]
            sel = sel - sel.mean(axis=0, keepdims=True)
            if linear:
                sel = sel - t[:, None] * ((t @ sel) / denom)[None, :]
            out[:, idx] = sel
            return out
        return run


@dataclass(frozen=True)
class Resample(Block):
    """Linear interpolation to ``rate_hz`` (put a ``lowpass`` below the new Nyquist first when going down)."""

    name: ClassVar[str] = "resample"
    description: ClassVar[str] = "linear-interpolation resampling to rate_hz"
    rate_hz: float = 0.0

    def check(self) -> None:
        if not self.rate_hz > 0:
            raise ChainError(f"must be > 0 Hz, got {self.rate_hz}", "rate_hz")

    def out(self, stage: Stage) -> Stage:
        rate = _need_rate(stage, self.name)
        length = round(stage.length * self.rate_hz / rate)
        if length < 1:
            raise ChainError(f"{stage.length} samples at {rate:g} Hz give no sample at {self.rate_hz:g} Hz", "rate_hz")
        return Stage(length, stage.channels, self.rate_hz, stage.names)

    def compile(self, stage: Stage) -> Fn:
        target = self.out(stage)
        pos = np.arange(target.length, dtype=np.float64) * ((stage.rate_hz or 1.0) / self.rate_hz)
        pos = np.minimum(pos, stage.length - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, stage.length - 1)
        frac = (pos - lo)[:, None]

        def run(x: Array) -> Array:
            x = np.asarray(x, dtype=np.float64)
            out: Array = x[lo] * (1.0 - frac) + x[hi] * frac
            return out
        return run


def _taper(kind: str, n: int) -> Array:
    return np.hanning(n) if kind == "hann" else np.ones(n)


@dataclass(frozen=True)
class BandEnergies(Block):
    """Power in frequency bands (``[[lo, hi], ...]`` Hz, lo inclusive, hi exclusive) of each channel's
    spectrum: output ``(bands, channels)``, mean power per band, optionally ``log`` (natural, +1e-12)."""

    name: ClassVar[str] = "band_energies"
    description: ClassVar[str] = "FFT power per frequency band"
    bands: tuple[tuple[float, float], ...] = ()
    window: str = "hann"
    log: bool = False

    def check(self) -> None:
        if not self.bands:
            raise ChainError("give at least one [low_hz, high_hz] band", "bands")
        for i, band in enumerate(self.bands):
            if len(band) != 2 or not 0 <= band[0] < band[1]:
                raise ChainError(f"{list(band)} is not [low_hz, high_hz] with 0 <= low < high", f"bands[{i}]")
        if self.window not in ("hann", "none"):
            raise ChainError(f"{self.window!r} is not hann or none", "window")

    def _bins(self, stage: Stage) -> list[Array]:
        rate = _need_rate(stage, self.name)
        freqs = np.fft.rfftfreq(stage.length, 1.0 / rate)
        out = []
        for i, (lo, hi) in enumerate(self.bands):
            sel = np.flatnonzero((freqs >= lo) & (freqs < hi))
            if not len(sel):
                raise ChainError(f"[{lo:g}, {hi:g}) Hz holds no FFT bin of a {stage.length}-sample window at "
                                 f"{rate:g} Hz (bins are {rate / stage.length:g} Hz apart)", f"bands[{i}]")
            out.append(sel)
        return out

    def out(self, stage: Stage) -> Stage:
        self._bins(stage)
        return Stage(len(self.bands), stage.channels, None, stage.names)

    def compile(self, stage: Stage) -> Fn:
        bins = self._bins(stage)
        taper = _taper(self.window, stage.length)[:, None]
        scale = 1.0 / stage.length
        log = self.log

        def run(x: Array) -> Array:
            power = np.abs(np.fft.rfft(np.asarray(x, np.float64) * taper, axis=0)) ** 2 * scale
            out = np.stack([power[sel].mean(axis=0) for sel in bins])
            result: Array = np.log(out + 1e-12) if log else out
            return result
        return run


FEATURES = ("mean", "std", "rms", "min", "max", "peak_hz", "peak_power", "zero_crossings")


@dataclass(frozen=True)
class Features(Block):
    """Per-channel window statistics: output ``(features, channels)`` in the order given.

    ``mean``, ``std``, ``rms``, ``min``, ``max``; ``peak_hz`` (frequency of the largest FFT bin above
    DC) and ``peak_power``; ``zero_crossings`` (sign changes of the mean-removed signal per second)."""

    name: ClassVar[str] = "features"
    description: ClassVar[str] = "window statistics: mean, std, RMS, min, max, peak frequency..."
    features: tuple[str, ...] = ("rms", "peak_hz")

    def check(self) -> None:
        if not self.features:
            raise ChainError("name at least one feature", "features")
        for i, f in enumerate(self.features):
            if f not in FEATURES:
                raise ChainError(f"{f!r} is not one of {', '.join(FEATURES)}", f"features[{i}]")

    def out(self, stage: Stage) -> Stage:
        if any(f in ("peak_hz", "peak_power", "zero_crossings") for f in self.features):
            _need_rate(stage, self.name)
        return Stage(len(self.features), stage.channels, None, stage.names)

    def compile(self, stage: Stage) -> Fn:
        rate = stage.rate_hz or 1.0
        freqs = np.fft.rfftfreq(stage.length, 1.0 / rate)
        taper = np.hanning(stage.length)[:, None]
        names = self.features
        seconds = stage.length / rate

        def run(x: Array) -> Array:
            x = np.asarray(x, np.float64)
            rows = []
            power = None
            for f in names:
                if f == "mean":
                    rows.append(x.mean(axis=0))
                elif f == "std":
                    rows.append(x.std(axis=0))
                elif f == "rms":
                    rows.append(np.sqrt(np.mean(x * x, axis=0)))
                elif f == "min":
                    rows.append(x.min(axis=0))
                elif f == "max":
                    rows.append(x.max(axis=0))
                elif f in ("peak_hz", "peak_power"):
                    if power is None:
                        centred = x - x.mean(axis=0, keepdims=True)
                        power = np.abs(np.fft.rfft(centred * taper, axis=0)) ** 2 / stage.length
                    k = 1 + np.argmax(power[1:], axis=0) if len(power) > 1 else np.zeros(x.shape[1], np.int64)
                    rows.append(freqs[k] if f == "peak_hz" else power[k, np.arange(x.shape[1])])
                else:
                    s = np.signbit(x - x.mean(axis=0, keepdims=True))
                    rows.append(np.count_nonzero(s[1:] != s[:-1], axis=0) / seconds)
            result: Array = np.stack(rows).astype(np.float64)
            return result
        return run


def _mel(hz: Array | float) -> Array:
    out: Array = 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)
    return out


def _mel_filters(n_mels: int, n_fft: int, rate: float, fmin: float, fmax: float) -> Array:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters, equally spaced on the HTK mel scale."""
    edges = 700.0 * (10 ** (np.linspace(_mel(fmin), _mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-12)
    down = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-12)
    filters: Array = np.maximum(0.0, np.minimum(up, down)).T
    return filters


@dataclass(frozen=True)
class LogMel(Block):
    """Log-mel spectrogram of an audio-like window: frames of ``n_fft`` samples every ``hop`` samples
    (Hann), power spectrum, ``n_mels`` triangular mel filters from ``fmin_hz`` to ``fmax_hz`` (default
    Nyquist), ``log(x + 1e-6)``. Output ``(frames, n_mels * channels)`` (channel-major)."""

    name: ClassVar[str] = "logmel"
    description: ClassVar[str] = "log-mel spectrogram (frames x mel bands)"
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 40
    fmin_hz: float = 0.0
    fmax_hz: float | None = None

    def check(self) -> None:
        for key in ("n_fft", "hop", "n_mels"):
            if getattr(self, key) < 1:
                raise ChainError(f"must be >= 1, got {getattr(self, key)}", key)
        if self.fmin_hz < 0 or (self.fmax_hz is not None and self.fmax_hz <= self.fmin_hz):
            raise ChainError("needs 0 <= fmin_hz < fmax_hz", "fmax_hz" if self.fmax_hz is not None else "fmin_hz")

    def _fmax(self, rate: float) -> float:
        return self.fmax_hz if self.fmax_hz is not None else rate / 2

    def out(self, stage: Stage) -> Stage:
        rate = _need_rate(stage, self.name)
        if self.n_fft > stage.length:
            raise ChainError(f"{self.n_fft} is longer than the {stage.length}-sample window", "n_fft")
        if self._fmax(rate) > rate / 2:
            raise ChainError(f"{self.fmax_hz} Hz is above the Nyquist frequency {rate / 2:g} Hz", "fmax_hz")
        frames = 1 + (stage.length - self.n_fft) // self.hop
        return Stage(frames, self.n_mels * stage.channels, rate / self.hop, ())

    def compile(self, stage: Stage) -> Fn:
        rate = stage.rate_hz or 1.0
        filters = _mel_filters(self.n_mels, self.n_fft, rate, self.fmin_hz, self._fmax(rate))
        frames = 1 + (stage.length - self.n_fft) // self.hop
        index = (np.arange(frames) * self.hop)[:, None] + np.arange(self.n_fft)[None, :]
        taper = np.hanning(self.n_fft)[None, :]

        def run(x: Array) -> Array:
            x = np.asarray(x, np.float64)
            out = []
            for c in range(x.shape[1]):
                spec = np.abs(np.fft.rfft(x[:, c][index] * taper, axis=1)) ** 2 / self.n_fft
                out.append(np.log(spec @ filters + 1e-6))
            return np.concatenate(out, axis=1)
        return run


# --------------------------------------------------------------------------------------------
# The registry and parsing


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


# --------------------------------------------------------------------------------------------
# A chain compiled for one input


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
