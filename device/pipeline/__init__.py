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

Modules: ``windows``, ``layout`` (normalization and layout), ``plan`` (:class:`InputPlan`), ``binding``
(channels, the model's input and task output), ``post`` (post-processing).
"""

from device.pipeline.binding import ChannelSource, bind_channels, parse_channel_ref, pick_input, task_output
from device.pipeline.layout import normalize, time_channel_axes, to_layout
from device.pipeline.plan import InputPlan, fit_normalization, model_windows, preparation_costs
from device.pipeline.post import (
    EMIT_MODES,
    FEATURES_IN_FULL,
    EmitMode,
    PostprocessConfig,
    PostProcessor,
    Prediction,
    softmax,
)
from device.pipeline.windows import Window, Windower, sliding_windows, window_count

__all__ = [
    "EMIT_MODES", "FEATURES_IN_FULL", "ChannelSource", "EmitMode", "InputPlan", "PostProcessor", "PostprocessConfig",
    "Prediction", "Window", "Windower", "bind_channels", "fit_normalization", "model_windows", "normalize",
    "parse_channel_ref", "pick_input", "preparation_costs", "sliding_windows", "softmax", "task_output",
    "time_channel_axes", "to_layout", "window_count",
]
