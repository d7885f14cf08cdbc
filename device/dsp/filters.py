"""Time-domain blocks: IIR high- and low-pass (first order or a Butterworth biquad, started from the first
sample's steady state), detrending and resampling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from device.dsp.base import Array, Block, ChainError, Fn, Stage, channel_index, need_rate

MATRIX_MAX_LENGTH = 512  # IIR filters on windows up to this length run as one (T, T) matrix product

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
        rate = need_rate(stage, self.name)
        if self.cutoff_hz >= rate / 2:
            raise ChainError(f"{self.cutoff_hz} Hz is not below the Nyquist frequency {rate / 2:g} Hz of a "
                             f"{rate:g} Hz input", "cutoff_hz")
        channel_index(stage, self.channels, self.name)
        return stage

    def compile(self, stage: Stage) -> Fn:
        return _iir(self.name, self.cutoff_hz, self.order, stage, channel_index(stage, self.channels, self.name))


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
        channel_index(stage, self.channels, self.name)
        return stage

    def compile(self, stage: Stage) -> Fn:
        idx = channel_index(stage, self.channels, self.name)
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
        rate = need_rate(stage, self.name)
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
