"""Normalization and layout: a ``(T, C)`` window normalized per channel and arranged as the model input's
declared shape (``NTC``, ``NCT``, ``TC``, ``NCHW`` with a singleton axis, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from device.dsp import Array
from device.errors import BadInput
from device.manifest import TensorSpec


def normalize(x: Array, mean: Sequence[float] | Array, std: Sequence[float] | Array) -> Array:
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


def to_layout(window_tc: Array, spec: TensorSpec, dims: tuple[int, int] | None = None) -> Array:
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

