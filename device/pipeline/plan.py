"""The one place where a raw window becomes a model input: :class:`InputPlan` (DSP chain, normalization,
layout), and the host helpers around it (normalization fitted on calibration windows, per-block costs)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from device.dsp import Array, ChainError, Compiled, Stage, compile_chain
from device.errors import BadInput
from device.manifest import TensorSpec
from device.pipeline.layout import normalize, time_channel_axes, to_layout
from device.pipeline.windows import sliding_windows


@dataclass(frozen=True)
class InputPlan:
    """How one raw window becomes the model's input tensor: DSP chain, normalization, layout, dtype.

    Without a chain the raw window is the model's ``(T, C)``; with one (``spec.preprocessing``) the raw
    window is ``spec.window`` samples of ``spec.channels`` at ``spec.sample_rate_hz`` and the chain's
    output must be the model's ``(T, C)``.
    """

    spec: TensorSpec
    mean: Array | None
    std: Array | None
    chain: Compiled | None = None

    @classmethod
    def for_input(cls, spec: TensorSpec) -> InputPlan:
        """The plan the manifest declares for ``spec`` (checks axes, the chain and the normalization)."""
        chain = _compile(spec) if spec.preprocessing else None
        dims = (chain.last.length, chain.last.channels) if chain is not None else None
        t_axis, c_axis = time_channel_axes(spec, dims)
        if chain is not None and dims is not None and (spec.shape[t_axis], spec.shape[c_axis]) != dims:
            raise BadInput(f"model input {spec.name!r}: its preprocessing makes {dims[0]} x {dims[1]} "
                           f"(time x channels) but the model takes {spec.shape[t_axis]} x {spec.shape[c_axis]} "
                           f"(shape {list(spec.shape)}); the chain does not fit this model")
        norm = spec.normalization
        if norm is None:
            return cls(spec=spec, mean=None, std=None, chain=chain)
        n_ch = spec.shape[c_axis]
        if len(norm.mean) not in (1, n_ch):
            raise BadInput(f"model input {spec.name!r}: normalization has {len(norm.mean)} values for {n_ch} "
                           "channels (give 1 or one per channel)")
        return cls(spec=spec, mean=np.asarray(norm.mean, dtype=np.float64), std=np.asarray(norm.std, dtype=np.float64),
                   chain=chain)

    @property
    def dims(self) -> tuple[int, int] | None:
        """``(time, channels)`` the chain makes, or ``None`` without one."""
        return None if self.chain is None else (self.chain.last.length, self.chain.last.channels)

    @property
    def window(self) -> int:
        """Raw samples per window."""
        if self.chain is not None:
            return self.chain.first.length
        return self.spec.shape[time_channel_axes(self.spec)[0]]

    @property
    def hop(self) -> int:
        return self.spec.hop or self.window

    @property
    def channels(self) -> int:
        """Raw sensor channels per sample."""
        if self.chain is not None:
            return self.chain.first.channels
        return self.spec.shape[time_channel_axes(self.spec)[1]]

    def features(self, window_tc: Array) -> Array:
        """The chain's output for one ``(T, C)`` raw window (or each window of an ``(M, T, C)`` batch), float64;
        the window itself without a chain."""
        x = np.asarray(window_tc, dtype=np.float64)
        if self.chain is None:
            return x
        if x.ndim == 3:  # one window at a time, exactly as the device computes it
            return np.stack([self.chain(w) for w in x]) if len(x) else np.empty((0, *self.chain.last_shape))
        if x.shape != (self.window, self.channels):
            raise BadInput(f"model input {self.spec.name!r}: its preprocessing takes a raw window of {self.window} "
                           f"samples x {self.channels} channels, got {x.shape[0]} x {x.shape[-1]}")
        return self.chain(x)

    def prepare(self, window_tc: Array) -> Array:
        """A raw ``(T, C)`` window (or ``(M, T, C)`` batch) through the chain, normalized and arranged as the
        model input. The one place where a window becomes a model input (daemon, parity, converter)."""
        x = self.features(window_tc) if self.chain is not None else window_tc
        return self.arrange(x)

    def arrange(self, features: Array) -> Array:
        """The chain's output (or a raw window without a chain) normalized and laid out as the model input."""
        x = normalize(features, self.mean, self.std) if self.mean is not None and self.std is not None \
            else np.asarray(features, np.float32)
        return np.ascontiguousarray(to_layout(x, self.spec, self.dims), dtype=np.float32)

    def unprepare(self, x: Array) -> Array:
        """The ``(T, C)`` window (float64) that :meth:`prepare` turns into the model input ``x``.

        Only without a chain: a DSP chain (filters, spectra) cannot be inverted, so a bundle with one
        stores the raw windows it read instead."""
        if self.chain is not None:
            raise BadInput(f"model input {self.spec.name!r}: its preprocessing cannot be inverted; the raw windows "
                           "must come from the recordings")
        t_axis, c_axis = time_channel_axes(self.spec)
        t_len, c_len = self.spec.shape[t_axis], self.spec.shape[c_axis]
        core = np.asarray(x, dtype=np.float64).reshape((t_len, c_len) if t_axis < c_axis else (c_len, t_len))
        window = core if t_axis < c_axis else core.T
        return window * self.std + self.mean if self.mean is not None and self.std is not None else window


def fit_normalization(features: Array) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of processed windows ``(M, T, C)`` over windows and time, as the converter
    computes it from the calibration windows (a constant channel gets std 1)."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    std[std < 1e-9] = 1.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def preparation_costs(plan: InputPlan, window_tc: Array, repeats: int = 200) -> list[tuple[str, float]]:
    """Median µs per window of each chain block, then of normalization + layout, on one raw window."""
    out = [(str(block), us) for block, us in plan.chain.timed(window_tc, repeats)] if plan.chain else []
    feats = plan.features(window_tc)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        plan.arrange(feats)
        times.append(time.perf_counter_ns() - t0)
    out.append(("normalize + layout", float(np.median(times)) / 1000.0))
    return out


def _compile(spec: TensorSpec) -> Compiled:
    where = f"model input {spec.name!r} preprocessing"
    if spec.window is None or not spec.channels:
        raise BadInput(f"{where}: a DSP chain needs the input's window and channel names in the manifest")
    try:
        return compile_chain(spec.preprocessing, Stage(spec.window, len(spec.channels), spec.sample_rate_hz,
                                                       spec.channels))
    except ChainError as exc:
        raise BadInput(exc.where(where)) from None


def model_windows(series: Array, spec: TensorSpec) -> Array:
    """Host helper: cut, normalize and arrange a ``(N, C)`` series exactly as the device does.

    Returns the batch ``(M, *input shape without its batch axis)`` ready for the model.
    """
    plan = InputPlan.for_input(spec)
    return plan.prepare(sliding_windows(np.asarray(series, dtype=np.float64), plan.window, plan.hop))

