"""The converter's data step: the inputs' layouts, calibration and validation data, fp32's reference outputs.

Raw recordings (a DSP chain, or an ``.npz`` recording) are cut into windows as the device cuts them, run
through the chain and normalized with statistics computed here from the processed calibration windows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from device.dsp import ChainError, Stage, compile_chain, parse_chain
from device.dsp import describe as describe_chain
from device.errors import BadInput
from device.manifest import Normalization, TensorSpec
from device.pipeline import InputPlan, fit_normalization
from toolchain.calibration import (
    CsvOptions,
    DataSet,
    InputSpec,
    RecordedWindows,
    class_ids,
    read_dataset,
    read_recording_windows,
    synthetic,
)
from toolchain.convert_records import Basis, Conversion, DataRead, ModelIO
from toolchain.options import FORMATS, ConvertOptions, Meaning
from toolchain.sources import Reference
from toolchain.validate import Runner, run_all


def logical_layouts(m: Meaning, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...]
                    ) -> dict[str, str | None]:
    """Each tensor's logical layout: ``--layout`` for the first input, else guessed from its channels or window."""
    layouts: dict[str, str | None] = {}
    for i, spec in enumerate(inputs):
        layout = m.layout if i == 0 and m.layout else None
        if layout is None and i == 0 and len(spec.shape) == 3 and not m.preprocess:
            if m.channels:
                n = len(m.channels)
                layout = "NCT" if spec.shape[1] == n else ("NTC" if spec.shape[2] == n else None)
            elif m.window:
                layout = "NTC" if spec.shape[1] == m.window else ("NCT" if spec.shape[2] == m.window else None)
        if layout is not None and len(layout) != len(spec.shape):
            raise BadInput(f"--layout {layout!r} has {len(layout)} axes but input {spec.name!r} has shape "
                           f"{list(spec.shape)}")
        layouts[spec.name] = layout
        if i == 0 and m.channels and not m.preprocess:  # a chain may change the channel count
            n = len(m.channels)
            fits = spec.shape[layout.index("C")] == n if layout and "C" in layout else n in spec.shape[1:]
            if not fits:
                raise BadInput(f"--channels names {n} channels but input {spec.name!r} has shape "
                               f"{list(spec.shape)}{' (' + layout + ')' if layout else ''}")
    for spec in outputs:
        layouts[spec.name] = None
    return layouts


def recorded(opts: ConvertOptions) -> bool:
    """Whether --calibration is raw recordings (a chain was given, or it is an .npz recording)."""
    from device import recording

    calibration = opts.quantization.calibration
    return calibration is not None and (bool(opts.meaning.preprocess) or recording.is_recording(calibration))


def read_data(c: Conversion, io: ModelIO) -> tuple[DataRead, ModelIO]:
    """The calibration and validation data (synthetic when none is given), and the model's tensors with
    any layout the recordings settled."""
    opts = c.opts
    q, m = opts.quantization, opts.meaning
    if recorded(opts):
        return _read_recordings(c, io)
    if m.preprocess:
        raise BadInput("--preprocess needs --calibration: raw sensor recordings (.csv or .npz, see "
                       "docs/recording.md) to compute the features and the normalization from")
    norm = Normalization(mean=m.norm_mean, std=m.norm_std) if m.norm_mean else None
    csv_opts = CsvOptions(channels=m.channels, window=m.window, hop=m.hop, layout=io.layouts.get(io.inputs[0].name),
                          normalization=norm) if io.inputs else CsvOptions()
    if q.calibration is not None:
        calib = read_dataset(q.calibration, io.inputs, csv_opts, limit=q.calibration_samples)
    else:
        calib = synthetic(io.inputs, 64, opts.output.seed)
        c.notes.append("calibration: no --calibration given, Gaussian noise used: int8 accuracy will be poor")
    if q.validation is not None:
        val = read_dataset(q.validation, io.inputs, csv_opts, limit=q.validation_samples, purpose="validation")
    elif q.calibration is not None:
        val = read_dataset(q.calibration, io.inputs, csv_opts, limit=q.validation_samples, purpose="validation")
        val.notes.append("no --validation given: the calibration data stands in (optimistic)")
    else:
        val = synthetic(io.inputs, 32, opts.output.seed + 1)
    capped = [n for n in val.notes if n.startswith("first ")]
    if capped and q.validation is not None:
        c.notes.append(f"validation: {capped[0]} (--max-validation)")
    return DataRead(calib=calib, val=val), io


def _recording_windows(opts: ConvertOptions, spec0: InputSpec
                       ) -> tuple[RecordedWindows, RecordedWindows | None, int, int]:
    """The raw calibration and validation windows, cut as the device cuts them, with the window and hop;
    checks their rates."""
    q, m = opts.quantization, opts.meaning
    window = m.window
    if window is None:
        if m.preprocess:
            raise BadInput("--preprocess needs --window (raw samples per window)")
        window = next((d for d in spec0.shape[1:] if d > 1), 1)
    hop = m.hop or window
    assert q.calibration is not None
    cal = read_recording_windows(q.calibration, m.channels, window, hop, q.calibration_samples)
    val = (read_recording_windows(q.validation, cal.channels, window, hop, q.validation_samples, "validation")
           if q.validation is not None else None)
    rate = cal.rate_hz
    if m.sample_rate_hz is not None and not math.isclose(m.sample_rate_hz, rate, rel_tol=1e-6):
        raise BadInput(f"--sample-rate {m.sample_rate_hz:g} Hz but {cal.source} was recorded at {rate:g} Hz; "
                       "resample in the chain (resample:rate_hz=...) instead")
    if val is not None and not math.isclose(val.rate_hz, rate, rel_tol=1e-6):
        raise BadInput(f"{val.source} was recorded at {val.rate_hz:g} Hz, {cal.source} at {rate:g} Hz")
    return cal, val, window, hop


def _sensor_spec(m: Meaning, spec0: InputSpec, cal: RecordedWindows, window: int, hop: int,
                 notes: list[str]) -> TensorSpec:
    """The first input's manifest spec over recordings: layout from the chain's output, the normalization
    given or computed from the processed calibration windows (said in ``notes``)."""
    chain = parse_chain(list(m.preprocess))
    layout = m.layout
    if layout is None and len(spec0.shape) == 3:
        try:
            last = compile_chain(chain, Stage(window, len(cal.channels), cal.rate_hz, cal.channels)).last
        except ChainError as exc:
            raise BadInput(exc.where("--preprocess")) from None
        dims = (last.length, last.channels)
        layout = "NTC" if spec0.shape[1:] == dims else ("NCT" if spec0.shape[1:] == dims[::-1] else None)
    spec = TensorSpec(name=spec0.name, shape=spec0.shape, dtype=spec0.dtype, layout=layout, channels=cal.channels,
                      sample_rate_hz=cal.rate_hz, window=window, hop=hop, units=m.channel_units or cal.units,
                      preprocessing=chain)
    if chain:
        notes.append(f"preprocessing: {describe_chain(chain)}")
    if m.norm_mean:
        norm = Normalization(mean=m.norm_mean, std=m.norm_std)
    else:
        mean, std = fit_normalization(InputPlan.for_input(spec).features(cal.raw))
        norm = Normalization(mean=mean, std=std)
        notes.append(f"normalization computed from {len(cal.raw)} calibration windows"
                     + (" after the chain" if chain else ""))
    return dataclasses.replace(spec, normalization=norm)


def _read_recordings(c: Conversion, io: ModelIO) -> tuple[DataRead, ModelIO]:
    """Calibration and validation windows from raw recordings, prepared as the device prepares them."""
    m = c.opts.meaning
    if len(io.inputs) != 1:
        raise BadInput("raw recordings (--preprocess) serve single-input models only")
    spec0 = io.inputs[0]
    cal, val, window, hop = _recording_windows(c.opts, spec0)
    spec = _sensor_spec(m, spec0, cal, window, hop, c.notes)
    io = dataclasses.replace(io, layouts={**io.layouts, spec0.name: spec.layout})
    plan = InputPlan.for_input(spec)
    names = m.labels or tuple(sorted({lab for w in (cal, val) if w is not None for lab in w.labels if lab}))
    label_names = names if names and not all(n.lstrip("-").isdigit() for n in names) else ()

    def dataset(w: RecordedWindows) -> DataSet:
        x = plan.prepare(w.raw).reshape((len(w.raw), *spec0.sample_shape)).astype(np.dtype(spec0.dtype))
        labels = class_ids(w.labels, label_names, w.source)
        return DataSet(arrays={spec0.name: x}, source=w.source, labels=labels, notes=list(w.notes), raw=w.raw)

    calib = dataset(cal)
    if val is None:
        valset = dataset(cal)
        valset.notes.append("no --validation given: the calibration data stands in (optimistic)")
    else:
        valset = dataset(val)
    return DataRead(calib=calib, val=valset, sensor_spec=spec, label_names=label_names), io


def reference(c: Conversion, io: ModelIO, val: DataSet) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """fp32 ONNX's outputs on the validation data, and how far they are from the source framework's own."""
    ins, outs = io.onnx_tensors()
    ref = run_all(Runner(io.source.onnx_path, "onnx", ins, outs, io.inputs, io.outputs, io.layouts), val, io.inputs)
    if io.source.reference is None:
        return ref, None
    return ref, _source_parity(c, io, io.source.reference, val, ref)


CALIBRATION_SCAN = 512  # calibration samples scanned for events (the fp32 model run once each)


def calibration_events(c: Conversion, b: Basis) -> None:
    """A note when fp32 never scores above the task's threshold on the calibration data.

    int8 ranges are fitted to the calibration data: without one event in it, the score's tensors get a range
    below the threshold and every detection saturates under it (a wake word calibrated on speech that never
    says it: the int8 files missed all of fp32's detections)."""
    rule = b.decision
    if rule is None or rule.kind != "threshold" or rule.threshold is None or b.calib.count == 0:
        return
    if not any(FORMATS[k][1].startswith("int8") for k in c.wanted):
        return
    ins, outs = b.io.onnx_tensors()
    runner = Runner(b.io.source.onnx_path, "onnx", ins, outs, b.inputs, b.outputs, b.io.layouts)
    sub = b.calib.take(min(b.calib.count, CALIBRATION_SCAN))
    scores = run_all(runner, sub, b.inputs)[rule.output]
    events = int(np.sum(scores > rule.threshold))
    if events == 0:
        c.notes.append(f"calibration data: fp32 scores no sample above the threshold {rule.threshold:g} on output "
                       f"{rule.output!r} (highest {float(np.max(scores)):.3g} in {sub.count} samples): int8 ranges "
                       "fitted to it cannot hold a detection; add examples of the event to --calibration")


def _source_parity(c: Conversion, io: ModelIO, source_ref: Reference, val: DataSet,
                   ref: dict[str, np.ndarray]) -> dict[str, Any]:
    sub = val.take(min(val.count, 16))
    src_out = run_all(source_ref, sub, io.inputs)
    diffs = [float(np.max(np.abs(src_out[k].astype(np.float64) - ref[k][: sub.count].astype(np.float64))))
             for k in ref if k in src_out and np.issubdtype(ref[k].dtype, np.floating)]
    parity: dict[str, Any] = {"samples": sub.count, "max_abs": max(diffs, default=0.0)}
    peak = max(float(np.max(np.abs(ref[k]))) for k in ref)
    if parity["max_abs"] > 1e-3 * max(1.0, peak):
        c.notes.append(f"fp32 ONNX differs from the {io.source.kind} model by up to {parity['max_abs']:.3g}")
    return parity


def task_output(m: Meaning, outputs: tuple[InputSpec, ...]) -> str:
    """The output the task reads: ``--task-output``, else the first output that fits the task."""
    names = [o.name for o in outputs]
    if m.task_output:
        if m.task_output not in names:
            raise BadInput(f"--task-output {m.task_output!r} is not an output ({', '.join(names)})")
        return m.task_output
    floats = [o for o in outputs if np.dtype(o.dtype).kind == "f"]
    if m.task in ("score", "anomaly"):  # a task about one value: the output that holds one
        single = [o for o in floats if int(np.prod(o.shape)) == 1]
        if single:
            return single[0].name
    multi = [o for o in floats if o.shape and o.shape[-1] > 1]
    return (multi or floats or list(outputs))[0].name
