"""The maths between sensor samples and sink records: windows, DSP chain, normalization, layout, post-processing.

Pure: no I/O, no clocks, no threads. The daemon feeds it samples and model outputs; the host
(reference models in ``models/``, the converter in ``toolchain/``) uses the same functions to
cut and normalize training data, so a model sees on the device exactly what it saw in training:

- :func:`sliding_windows` cuts a ``(N, C)`` series into ``(M, window, C)`` windows that start at
  ``0, hop, 2*hop, ...``; :class:`Windower` produces the same windows one sample at a time.
- :class:`InputPlan` turns one raw ``(T, C)`` window into the model input: the manifest's DSP chain
  (:mod:`device.dsp`, when the input declares ``preprocessing``), normalization, layout. It is the one
  place that does so: the daemon, parity (canary, verify) and the converter all call
  :meth:`InputPlan.prepare`.
- :func:`normalize` is ``(x - mean) / std`` per channel (last axis), in float32.
- :func:`to_layout` turns a ``(T, C)`` window into the model input's declared shape and layout
  (``NTC``, ``NCT``, ``TC``, ``NCHW`` with a singleton axis, ...).
- :class:`PostProcessor` turns model outputs into predictions: softmax and labels, a confidence
  threshold, smoothing over the last ``k`` windows, emit every window or only on change.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.dsp import ChainError, Compiled, Stage, compile_chain
from device.errors import BadInput
from device.manifest import Manifest, Task, TensorSpec

EMIT_MODES = ("every", "change")


# --------------------------------------------------------------------------------------------
# Windows


def sliding_windows(series: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Cut a ``(N, C)`` series into windows ``(M, window, C)`` starting at ``0, hop, 2*hop, ...``.

    Only complete windows are returned (``M = 0`` when ``N < window``). This is the offline twin
    of :class:`Windower`: fed the same samples without gaps, both give identical windows.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got window={window} hop={hop}")
    data = np.asarray(series)
    if data.ndim != 2:
        raise ValueError(f"expected a (samples, channels) array, got shape {data.shape}")
    n = data.shape[0]
    if n < window:
        return np.empty((0, window, data.shape[1]), dtype=data.dtype)
    starts = np.arange(0, n - window + 1, hop)
    index = starts[:, None] + np.arange(window)[None, :]
    return data[index]


def window_count(n_samples: int, window: int, hop: int) -> int:
    """How many complete windows :func:`sliding_windows` cuts from ``n_samples`` samples."""
    return 0 if n_samples < window else (n_samples - window) // hop + 1


@dataclass(frozen=True)
class Window:
    """One complete window from :class:`Windower`.

    ``data`` is ``(window, channels)`` float64 in time order; ``first_seq``/``last_seq`` are the
    sample sequence numbers (0-based count of samples pushed) and ``start_ns``/``end_ns`` the
    timestamps of its first and last samples.
    """

    data: np.ndarray
    first_seq: int
    last_seq: int
    start_ns: int
    end_ns: int


@dataclass
class Windower:
    """Streaming windows over a ring buffer, with gap detection.

    Push one sample at a time with its *slot*: the index of the sampling tick it belongs to
    (tick ``k`` is due at ``t0 + k * period``). Consecutive samples have consecutive slots; a
    jump (a failed read, a missed tick) is a gap, and so is an explicit :meth:`mark_gap`. Windows
    follow the same hop grid as :func:`sliding_windows` over the samples actually received; a
    window whose samples straddle a gap is skipped and counted in ``skipped_gap`` rather than
    handed to the model.
    """

    window: int
    hop: int
    channels: int
    emitted: int = 0
    skipped_gap: int = 0
    gaps: int = 0
    samples: int = 0
    _buf: np.ndarray = field(init=False, repr=False)
    _times: np.ndarray = field(init=False, repr=False)
    _last_slot: int | None = field(default=None, init=False, repr=False)
    _last_gap_seq: int = field(default=0, init=False, repr=False)
    _gap_pending: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.window < 1 or self.hop < 1 or self.channels < 1:
            raise ValueError(f"window, hop and channels must be >= 1 (got {self.window}, {self.hop}, {self.channels})")
        self._buf = np.zeros((self.window, self.channels), dtype=np.float64)
        self._times = np.zeros(self.window, dtype=np.int64)

    def mark_gap(self) -> None:
        """Declare that samples were lost before the next one (a failed read, a reset sensor)."""
        self._gap_pending = True

    def push(self, slot: int, t_ns: int, values: Sequence[float] | np.ndarray) -> Window | None:
        """Add one sample; return the window it completes, if any (and if it has no gap)."""
        seq = self.samples
        if self._gap_pending or (self._last_slot is not None and slot != self._last_slot + 1):
            if seq > 0:
                self.gaps += 1
                self._last_gap_seq = seq
            self._gap_pending = False
        self._last_slot = slot
        pos = seq % self.window
        self._buf[pos] = values
        self._times[pos] = t_ns
        self.samples = seq + 1
        n = self.samples
        if n < self.window or (n - self.window) % self.hop:
            return None
        first = n - self.window
        if self._last_gap_seq > first:
            self.skipped_gap += 1
            return None
        self.emitted += 1
        order = (np.arange(self.window) + n) % self.window  # oldest first
        return Window(data=self._buf[order].copy(), first_seq=first, last_seq=n - 1,
                      start_ns=int(self._times[order[0]]), end_ns=int(self._times[order[-1]]))


# --------------------------------------------------------------------------------------------
# Normalization and layout


def normalize(x: np.ndarray, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` along the last (channel) axis, as float32.

    ``mean``/``std`` hold one value per channel or a single value for all channels.
    """
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    return ((np.asarray(x, dtype=np.float64) - m) / s).astype(np.float32)


def time_channel_axes(spec: TensorSpec, dims: tuple[int, int] | None = None) -> tuple[int, int]:
    """The axes of ``spec.shape`` that hold time and channels.

    Taken from the layout when it names ``T`` and ``C``; else inferred from the shape, the
    window and the channel names (every other axis must be 1), or from ``dims`` (the
    ``(time, channels)`` a DSP chain makes). Raises :class:`BadInput`.
    """
    shape = spec.shape
    where = f"model input {spec.name!r} (shape {list(shape)}, layout {spec.layout or 'unset'})"
    if spec.layout and "T" in spec.layout and "C" in spec.layout:
        t_axis, c_axis = spec.layout.index("T"), spec.layout.index("C")
    else:
        window, n_ch = dims if dims is not None else (spec.window, len(spec.channels) or None)
        candidates = [i for i, d in enumerate(shape) if d > 1] or [len(shape) - 1]
        if len(candidates) == 1:
            # One non-trivial axis: either a single channel over time or a single time step.
            axis = candidates[0]
            if n_ch not in (None, 1) and shape[axis] == n_ch:
                c_axis, t_axis = axis, _other_unit_axis(shape, axis, where)
            else:
                t_axis, c_axis = axis, _other_unit_axis(shape, axis, where)
        elif len(candidates) == 2:
            a, b = candidates
            if window is not None and shape[a] == window and shape[b] != window:
                t_axis, c_axis = a, b
            elif window is not None and shape[b] == window and shape[a] != window:
                t_axis, c_axis = b, a
            elif n_ch is not None and shape[b] == n_ch:
                t_axis, c_axis = a, b
            elif n_ch is not None and shape[a] == n_ch:
                t_axis, c_axis = b, a
            else:
                t_axis, c_axis = a, b  # channels-last, the common case
        else:
            raise BadInput(f"{where}: cannot tell time from channels; give the input a layout such as NTC")
    for i, d in enumerate(shape):
        if i not in (t_axis, c_axis) and d != 1:
            raise BadInput(f"{where}: axis {i} has size {d}; only time and channel axes may exceed 1")
    return t_axis, c_axis


def _other_unit_axis(shape: tuple[int, ...], axis: int, where: str) -> int:
    for i in range(len(shape) - 1, -1, -1):
        if i != axis and shape[i] == 1:
            return i
    raise BadInput(f"{where}: needs separate time and channel axes")


def to_layout(window_tc: np.ndarray, spec: TensorSpec, dims: tuple[int, int] | None = None) -> np.ndarray:
    """Arrange a ``(T, C)`` window (or a ``(M, T, C)`` batch) into ``spec.shape`` (batched on axis 0).

    A single window gives an array of exactly ``spec.shape``; a batch gives ``(M, *spec.shape[1:])``
    when the model's first axis is a batch axis of 1, else ``(M, *spec.shape)``.
    """
    x = np.asarray(window_tc)
    t_axis, c_axis = time_channel_axes(spec, dims)
    t_len, c_len = spec.shape[t_axis], spec.shape[c_axis]
    if x.shape[-2:] != (t_len, c_len):
        raise BadInput(f"model input {spec.name!r}: expects {t_len} time steps x {c_len} channels, "
                       f"got a window of {x.shape[-2]} x {x.shape[-1]}")
    rank = len(spec.shape)
    order = sorted([t_axis, c_axis])
    # Place T and C in the order the model wants, then insert unit axes around them.
    core = x if t_axis < c_axis else np.swapaxes(x, -1, -2)
    if x.ndim == 2:
        shape = [1] * rank
        shape[order[0]], shape[order[1]] = core.shape
        return core.reshape(shape)
    batch = x.shape[0]
    shape = [1] * rank
    shape[order[0]], shape[order[1]] = core.shape[-2:]
    if rank > 2 and spec.shape[0] == 1 and 0 not in order:
        return core.reshape([batch, *shape[1:]])
    return core.reshape([batch, *shape])


@dataclass(frozen=True)
class InputPlan:
    """How one raw window becomes the model's input tensor: DSP chain, normalization, layout, dtype.

    Without a chain the raw window is the model's ``(T, C)``; with one (``spec.preprocessing``) the raw
    window is ``spec.window`` samples of ``spec.channels`` at ``spec.sample_rate_hz`` and the chain's
    output must be the model's ``(T, C)``.
    """

    spec: TensorSpec
    mean: np.ndarray | None
    std: np.ndarray | None
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

    def features(self, window_tc: np.ndarray) -> np.ndarray:
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

    def prepare(self, window_tc: np.ndarray) -> np.ndarray:
        """A raw ``(T, C)`` window (or ``(M, T, C)`` batch) through the chain, normalized and arranged as the
        model input. The one place where a window becomes a model input (daemon, parity, converter)."""
        x = self.features(window_tc) if self.chain is not None else window_tc
        x = normalize(x, self.mean, self.std) if self.mean is not None else np.asarray(x, np.float32)
        return np.ascontiguousarray(to_layout(x, self.spec, self.dims), dtype=np.float32)

    def unprepare(self, x: np.ndarray) -> np.ndarray:
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


def fit_normalization(features: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of processed windows ``(M, T, C)`` over windows and time, as the converter
    computes it from the calibration windows (a constant channel gets std 1)."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    std[std < 1e-9] = 1.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def preparation_costs(plan: InputPlan, window_tc: np.ndarray, repeats: int = 200) -> list[tuple[str, float]]:
    """Median µs per window of each chain block, then of normalization + layout, on one raw window."""
    out = [(str(block), us) for block, us in plan.chain.timed(window_tc, repeats)] if plan.chain else []
    feats = plan.features(window_tc)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        x = normalize(feats, plan.mean, plan.std) if plan.mean is not None else np.asarray(feats, np.float32)
        np.ascontiguousarray(to_layout(x, plan.spec, plan.dims), dtype=np.float32)
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


def model_windows(series: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Host helper: cut, normalize and arrange a ``(N, C)`` series exactly as the device does.

    Returns the batch ``(M, *input shape without its batch axis)`` ready for the model.
    """
    plan = InputPlan.for_input(spec)
    return plan.prepare(sliding_windows(np.asarray(series, dtype=np.float64), plan.window, plan.hop))


# --------------------------------------------------------------------------------------------
# Channel binding


@dataclass(frozen=True)
class ChannelSource:
    """Where one model input channel comes from: sensor ``sensor``'s channel ``channel``."""

    sensor: str
    channel: str

    def __str__(self) -> str:
        return f"{self.sensor}.{self.channel}"


def parse_channel_ref(ref: str) -> ChannelSource:
    """``"imu.accel_x"`` → ``ChannelSource("imu", "accel_x")`` (the sensor id is before the first dot)."""
    sensor, dot, channel = ref.partition(".")
    if not dot or not sensor or not channel:
        raise BadInput(f"{ref!r} is not a channel reference; expected SENSOR_ID.CHANNEL such as imu.accel_x")
    return ChannelSource(sensor, channel)


def bind_channels(
    model_channels: Sequence[str],
    sensor_channels: dict[str, Sequence[str]],
    overrides: dict[str, str] | None = None,
    where: str = "binding",
) -> tuple[ChannelSource, ...]:
    """Map every model input channel to a sensor channel.

    By default a model channel named ``imu.accel_x`` reads sensor ``imu``'s channel ``accel_x``;
    ``overrides`` maps a model channel name to another ``SENSOR.CHANNEL``. ``sensor_channels``
    lists each configured sensor's channels. Raises :class:`BadInput` naming the channel.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(model_channels))
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}: the model has no input channel {unknown[0]!r} "
                       f"(its channels: {', '.join(model_channels)})")
    out = []
    for name in model_channels:
        ref = overrides.get(name, name)
        key = f"{where}.{name}" if name in overrides else f"model channel {name!r}"
        if "." not in ref and name not in overrides:
            # A bare channel name (accel_x): the one sensor that has such a channel.
            owners = [sid for sid, chans in sensor_channels.items() if ref in chans]
            if len(owners) == 1:
                out.append(ChannelSource(owners[0], ref))
                continue
            if len(owners) > 1:
                raise BadInput(f"{key}: sensors {', '.join(owners)} all have a channel {ref!r}; say which in "
                               f'[binding], e.g. "{name}" = "{owners[0]}.{ref}"')
            raise BadInput(f"{key}: no sensor has a channel {ref!r}; bind it in [binding], e.g. "
                           f'"{name}" = "SENSOR_ID.CHANNEL"')
        try:
            src = parse_channel_ref(ref)
        except BadInput:
            raise BadInput(f"{key}: {ref!r} is not SENSOR_ID.CHANNEL; bind it in [binding], "
                           f'e.g. "{name}" = "imu.accel_x"') from None
        if src.sensor not in sensor_channels:
            raise BadInput(f"{key}: no sensor with id {src.sensor!r} (sensors: "
                           f"{', '.join(sensor_channels) or 'none'}); add it or bind the channel in [binding]")
        if src.channel not in sensor_channels[src.sensor]:
            raise BadInput(f"{key}: sensor {src.sensor!r} has no channel {src.channel!r} (it has: "
                           f"{', '.join(sensor_channels[src.sensor])})")
        out.append(src)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Post-processing


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = np.asarray(x, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


@dataclass(frozen=True)
class PostSettings:
    """User post-processing choices (from the config's ``[postprocess]``)."""

    labels: tuple[str, ...] = ()
    threshold: float | None = None
    smoothing: int = 1
    emit: str = "every"
    unknown_label: str = "unknown"


FEATURES_IN_FULL = 64  # a features output up to this size is published value by value, else summarised


@dataclass(frozen=True)
class Prediction:
    """What one window amounted to after post-processing.

    ``label`` is the reported class (classification), ``"anomaly"``/``"normal"`` (anomaly),
    ``"detected"``/``"clear"`` (score with a threshold) or ``None`` (regression, features, score without
    a threshold); ``values`` hold the smoothed per-class probabilities, regression targets, the score,
    or the feature vector (``f0``, ``f1``...; a summary — mean, std, min, max, L2 norm — when it holds
    more than :data:`FEATURES_IN_FULL` values); ``emit`` says whether the emit policy wants it sent.
    """

    label: str | None
    score: float | None
    values: dict[str, float]
    emit: bool
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "score": self.score, "values": self.values}
        return {k: v for k, v in out.items() if v is not None}


class PostProcessor:
    """Turns one model output per window into a :class:`Prediction` (stateful: smoothing, change)."""

    def __init__(self, task: Task, output: TensorSpec, settings: PostSettings) -> None:
        self.task = task
        self.settings = settings
        if settings.emit not in EMIT_MODES:
            raise BadInput(f"postprocess.emit: {settings.emit!r} is not one of {', '.join(EMIT_MODES)}")
        if settings.smoothing < 1:
            raise BadInput(f"postprocess.smoothing: must be >= 1, got {settings.smoothing}")
        size = int(np.prod(output.shape))
        if task.kind == "classification":
            labels = settings.labels or task.labels
            if len(labels) != size:
                src = "postprocess.labels" if settings.labels else "the manifest's task.labels"
                raise BadInput(f"{src}: {len(labels)} labels for a model output of {size} classes")
            self.names: tuple[str, ...] = tuple(labels)
            if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
                raise BadInput(f"postprocess.threshold: a class probability threshold must be in [0, 1], "
                               f"got {settings.threshold}")
        elif task.kind == "regression":
            if task.targets and len(task.targets) != size:
                raise BadInput(f"the manifest's task.targets: {len(task.targets)} names for a model output of "
                               f"{size} values")
            self.names = tuple(task.targets) or tuple(f"y{i}" for i in range(size))
            if settings.threshold is not None:
                raise BadInput("postprocess.threshold: has no meaning for a regression model; remove it")
            if settings.emit == "change":
                raise BadInput('postprocess.emit: "change" needs a class or anomaly model; use "every"')
            if settings.labels:
                raise BadInput("postprocess.labels: a regression model has no labels; remove them")
        elif task.kind == "features":
            self.names = tuple(f"f{i}" for i in range(size)) if size <= FEATURES_IN_FULL else ()
            if settings.threshold is not None:
                raise BadInput("postprocess.threshold: has no meaning for a features model; remove it")
            if settings.emit == "change":
                raise BadInput('postprocess.emit: "change" needs a class, score or anomaly model; use "every"')
            if settings.labels:
                raise BadInput("postprocess.labels: a features model has no labels; remove them")
        else:
            if size != 1:
                raise BadInput(f"output {output.name!r}: a{'n' if task.kind == 'anomaly' else ''} {task.kind} model "
                               f"outputs one score, but its shape {list(output.shape)} holds {size} values")
            self.names = (task.score or "score",)
            if settings.labels:
                raise BadInput(f"postprocess.labels: a{'n' if task.kind == 'anomaly' else ''} {task.kind} model has "
                               "no labels; remove them")
        self._history: deque[np.ndarray] = deque(maxlen=settings.smoothing)
        self._last_label: str | None = None
        self._emitted_any = False

    @property
    def threshold(self) -> float | None:
        if self.task.kind in ("anomaly", "score"):
            return self.settings.threshold if self.settings.threshold is not None else self.task.threshold
        return self.settings.threshold

    def reset(self) -> None:
        """Forget the smoothing history (after a model swap or a long gap)."""
        self._history.clear()

    def __call__(self, output: np.ndarray) -> Prediction:
        raw = np.asarray(output, dtype=np.float64).reshape(-1)
        if self.task.kind == "classification" and self.task.activation == "logits":
            raw = softmax(raw)
        self._history.append(raw)
        smoothed = np.mean(np.stack(self._history), axis=0)
        if self.task.kind == "features" and not self.names:  # too long to publish value by value
            values = {"mean": float(np.mean(smoothed)), "std": float(np.std(smoothed)), "min": float(np.min(smoothed)),
                      "max": float(np.max(smoothed)), "l2": float(np.linalg.norm(smoothed)),
                      "size": float(smoothed.size)}
        else:
            values = {name: float(v) for name, v in zip(self.names, smoothed, strict=True)}
        label: str | None
        score: float | None
        if self.task.kind == "classification":
            best = int(np.argmax(smoothed))
            score = float(smoothed[best])
            label = self.names[best]
            if self.threshold is not None and score < self.threshold:
                label = self.settings.unknown_label
        elif self.task.kind == "anomaly":
            score = float(smoothed[0])
            threshold = self.threshold
            label = "anomaly" if threshold is not None and score > threshold else "normal"
        elif self.task.kind == "score":
            score = float(smoothed[0])
            threshold = self.threshold
            label = None if threshold is None else "detected" if score > threshold else "clear"
        else:
            label, score = None, None
        changed = label != self._last_label or not self._emitted_any
        emit = self.settings.emit == "every" or changed
        if emit:
            self._emitted_any = True
            self._last_label = label
        return Prediction(label=label, score=score, values=values, emit=emit, changed=changed)


def pick_input(manifest: Manifest, name: str | None) -> TensorSpec:
    """The model input the sensors feed: ``name`` or the only input."""
    if name is None:
        if len(manifest.inputs) != 1:
            names = ", ".join(i.name for i in manifest.inputs)
            raise BadInput(f"model.input: the model has {len(manifest.inputs)} inputs ({names}); say which one "
                           "the sensors feed")
        return manifest.inputs[0]
    for spec in manifest.inputs:
        if spec.name == name:
            return spec
    raise BadInput(f"model.input: the model has no input {name!r} (inputs: "
                   f"{', '.join(i.name for i in manifest.inputs)})")


def task_output(manifest: Manifest) -> TensorSpec:
    """The output the manifest's task describes."""
    for spec in manifest.outputs:
        if spec.name == manifest.task.output:
            return spec
    raise BadInput(f"manifest task.output {manifest.task.output!r} names no output")
