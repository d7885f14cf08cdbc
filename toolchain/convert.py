"""The conversion pipeline: load → fp32 ONNX → quantize → TFLite → validate → bundle.

``convert(ConvertOptions(...))`` is the whole of ``spinal convert``. Work happens in a private
temporary directory next to the output; the bundle appears (renamed into place, or packed as a
``.spinal`` archive) only when everything worked, so a failed run leaves nothing half-written.

Artifacts (``--formats``; the default is every one that applies):

==============  ======================  ===================================================
key             file                    how
==============  ======================  ===================================================
onnx-fp32       model.fp32.onnx         the imported model, one file, fixed shapes
onnx-int8       model.int8.onnx         onnxruntime static QDQ int8
tflite-fp32     model.fp32.tflite       onnx2tf SavedModel (or Keras) → TFLiteConverter
tflite-fp16     model.fp16.tflite       float16 weights
tflite-int8     model.int8.tflite       full-integer kernels, float input/output
tflite-int8-io  model.int8-io.tflite    full-integer, int8 input/output tensors
==============  ======================  ===================================================

Every quantized artifact goes through the accuracy gate (:mod:`toolchain.validate`): one that
loses more than ``max_drop`` points against fp32 is re-made with the remedies (per-channel ↔
per-tensor, other calibration methods, the most sensitive nodes kept in float) and is shipped
only if one of them passes. Every attempt is reported.
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput, CheckFailed, ModelFileError, SpinalError
from device.manifest import Manifest
from toolchain.calibration import read_raw
from toolchain.convert_artifacts import decision, evaluate, make_onnx_int8, record, unknown_ops
from toolchain.convert_bundle import bundle, publish
from toolchain.convert_data import calibration_events, logical_layouts, read_data, recorded, reference, task_output
from toolchain.convert_records import Basis, Conversion, DataRead, Made, ModelIO, Progress
from toolchain.convert_tflite import make_tflite
from toolchain.failures import InternalFailure, describe
from toolchain.options import (
    DROP_MEANING,
    FORMATS,
    TASKS,
    ConvertOptions,
    Meaning,
    Output,
    Quantization,
    Source,
    check_options,
)
from toolchain.validate import Runner, onnx_io, parse_gate_measure, run_all, score

__all__ = ["DROP_MEANING", "FORMATS", "TASKS", "ConvertOptions", "ConvertResult", "Meaning", "Output", "Progress",
           "Quantization", "Source", "convert"]


@dataclass
class ConvertResult:
    """What ``convert`` made."""

    out: Path
    manifest: Manifest
    report: dict[str, Any]


def convert(opts: ConvertOptions, progress: Progress | None = None) -> ConvertResult:
    """Convert ``opts.source.model`` into a verified bundle at ``opts.output.out``. Raises SpinalError subclasses."""
    wanted = check_options(opts)
    out = opts.output.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Absolute: TensorFlow's child process has its own working directory, and a relative --out must not
    # depend on anybody's.
    work = Path(tempfile.mkdtemp(prefix=".spinal-convert-", dir=out.parent.resolve()))
    try:
        c = Conversion(opts=opts, wanted=wanted, work=work, progress=progress or Progress())
        c.stage.mkdir()
        return _run(c)
    finally:
        if "toolchain.tf_worker" in sys.modules:
            sys.modules["toolchain.tf_worker"].close_workers()
        shutil.rmtree(work, ignore_errors=True)


def _run(c: Conversion) -> ConvertResult:
    from toolchain.as_is import as_is_kind

    t_start = time.perf_counter()
    if as_is_kind(c.opts.source.model) is not None:
        return _run_as_is(c, t_start)
    c.progress.start(4 + len(c.wanted))
    io = _load(c)
    b = _basis(c, io)
    for key in c.wanted:
        c.timed(key, functools.partial(make, c, b, key))
    if not c.shipped:
        reasons = [f"{k}: {v.get('reason', 'rejected by the accuracy gate')}" for k, v in
                   {**c.rejected, **c.failed}.items()]
        if not c.rejected:  # nothing could be made at all: the model is the problem
            raise ModelFileError(f"{c.opts.source.model}: no artifact could be made; " + "; ".join(reasons))
        raise CheckFailed("no artifact passed; " + "; ".join(reasons))
    return _finish(c, b, t_start)


def _finish(c: Conversion, b: Basis, t_start: float) -> ConvertResult:
    """The bundle written, verified and published: the last step, and the only one that touches ``--out``."""
    def write_and_publish() -> tuple[Manifest, dict[str, Any]]:
        manifest, report = bundle(c, b, time.perf_counter() - t_start)
        publish(c.stage, c.opts.output.out, c.work)
        return manifest, report

    manifest, report = c.timed("bundle", write_and_publish)
    return ConvertResult(out=c.opts.output.out, manifest=manifest, report=report)


def _load(c: Conversion) -> ModelIO:
    """The model imported to one fp32 ONNX file, and its tensors."""
    from toolchain.sources import SourceOptions, load_source

    src, q = c.opts.source, c.opts.quantization
    hints = {}
    if q.calibration is not None and q.calibration.suffix in (".npz", ".npy") and not recorded(c.opts):
        hints = {k: tuple(v.shape) for k, v in read_raw(q.calibration).items()}
    src_opts = SourceOptions(input_shapes=src.input_shapes, hint_shapes=hints, input_names=src.input_names,
                             output_names=src.output_names, opset=src.opset)
    source = c.timed("import model", lambda: load_source(src.model, c.work, src_opts))
    c.notes += source.notes
    from toolchain.graph_fixes import fold_ifs

    c.notes += fold_ifs(source.onnx_path)
    if source.tflite_blocked and not q.formats:  # the default is every format that applies
        c.wanted = tuple(k for k in c.wanted if FORMATS[k][0] != "tflite")
    fp32 = source.onnx_path
    try:
        inputs, outputs = onnx_io(fp32)
    except Exception as exc:
        unknown = unknown_ops(fp32)
        if unknown:
            raise ModelFileError(f"{src.model}: unsupported operator(s): {unknown}; onnxruntime (and so every "
                                 "artifact) needs standard ONNX operators — replace or decompose them before "
                                 "export") from None
        detail = str(exc).splitlines()[0]
        detail = detail.split("failed:", 1)[-1].strip() if "failed:" in detail else detail
        raise ModelFileError(f"{src.model}: onnxruntime cannot run the imported model "
                             f"({type(exc).__name__}: {detail[:300]})") from None
    return ModelIO(source, inputs, outputs, logical_layouts(c.opts.meaning, inputs, outputs))


def _basis(c: Conversion, io: ModelIO) -> Basis:
    """Read the data and run the fp32 ONNX file on it for reference."""
    data, io = c.timed("read data", lambda: read_data(c, io))
    ref, parity = c.timed("reference outputs", lambda: reference(c, io, data.val))
    b = _settle(c, io, data, ref, parity)
    calibration_events(c, b)
    return b


def make(c: Conversion, b: Basis, key: str) -> None:
    """Make artifact ``key``; a model's refusal is noted (the others go on), our own failure raises."""
    fmt, precision, name = FORMATS[key]
    try:
        if key == "onnx-fp32":
            ins, outs = b.io.onnx_tensors()
            path = b.io.source.onnx_path
            metrics, runner = evaluate(b, path, "onnx", ins, outs)
            record(c, b, key, Made("fp32", path, ins, outs, metrics, runner), {})
        elif key == "onnx-int8":
            make_onnx_int8(c, b)
        else:
            make_tflite(c, b, key, precision)
    except ModelFileError as exc:  # the model's reason: noted, the other artifacts go on
        c.failed[name] = {"format": fmt, "precision": precision, "reason": str(exc)}
        if not (fmt == "tflite" and b.io.source.tflite_blocked):
            c.notes.append(f"{name} not produced: {exc}")
    except InternalFailure as exc:
        raise InternalFailure(f"{name} could not be made: {exc}") from None
    except SpinalError:
        raise
    except Exception as exc:  # not the model's fault: never a bundle that silently lacks an artifact
        raise InternalFailure(f"{name} could not be made: internal error ({describe(exc)})") from None


def _settle(c: Conversion, io: ModelIO, data: DataRead, ref: dict[str, np.ndarray],
            parity: dict[str, Any] | None) -> Basis:
    """The basis every artifact is judged on: the task's output, fp32's score and decisions."""
    out = task_output(c.opts.meaning, io.outputs)
    measure = parse_gate_measure(c.opts.quantization.gate_measure, c.opts.meaning.threshold)
    baseline = score(ref, ref, data.val, out, None, measure=measure)
    return Basis(io=io, data=data, ref=ref, source_parity=parity, task_output=out, baseline=baseline,
                 decision=decision(c.opts.meaning, io.outputs, out, data.val), measure=measure)


def _run_as_is(c: Conversion, t_start: float) -> ConvertResult:
    """A .tflite file or an already-quantized .onnx: one artifact, the file itself (see toolchain.as_is)."""
    from toolchain.as_is import as_is_kind, prepare_onnx, prepare_tflite

    src, q = c.opts.source, c.opts.quantization
    path = Path(src.model)
    files = {k: v[2] for k, v in FORMATS.items()}
    c.progress.start(5)
    hints = {}
    if q.calibration is not None and q.calibration.suffix in (".npz", ".npy"):
        hints = {k: tuple(v.shape) for k, v in read_raw(q.calibration).items()}
    if as_is_kind(src.model) == "tflite":
        made = c.timed("read model", lambda: prepare_tflite(path, c.work, files, src.input_shapes))
    else:
        made = c.timed("read model", lambda: prepare_onnx(path, c.work, files, src.input_shapes, hints))
    if q.formats and set(q.formats) != {made.key}:
        raise BadInput(f"{path}: is bundled as it is ({made.key}); --formats cannot make "
                       f"{', '.join(k for k in q.formats if k != made.key)} from it (convert the source model "
                       "for those)")
    c.wanted = (made.key,)
    c.notes += made.notes
    try:
        return _bundle_as_is(c, made, t_start)
    except SpinalError as exc:  # name the user's file, not the copy in the work directory
        message = str(exc)
        for copy in (made.path, c.stage / files[made.key]):
            message = message.replace(str(copy), str(path))
        exc.args = (message, *exc.args[1:])
        raise


def _bundle_as_is(c: Conversion, made: Any, t_start: float) -> ConvertResult:
    """The as-is artifact measured, recorded and bundled (``made``: toolchain.as_is's prepared file)."""
    from toolchain.sources import SourceModel

    fmt = FORMATS[made.key][0]
    source = SourceModel(kind=f"{fmt} (as is)", onnx_path=made.path)
    io = ModelIO(source, made.inputs, made.outputs, logical_layouts(c.opts.meaning, made.inputs, made.outputs))
    data, io = c.timed("read data", lambda: read_data(c, io))
    runner = Runner(made.path, fmt, made.art_inputs, made.art_outputs, io.inputs, io.outputs, io.layouts)
    ref = c.timed("reference outputs", lambda: run_all(runner, data.val, io.inputs))
    b = _settle(c, io, data, ref, None)
    metrics = score(b.ref, b.ref, b.val, b.task_output, b.baseline, measure=b.measure)
    record(c, b, made.key, Made("as is", made.path, made.art_inputs, made.art_outputs, metrics, runner),
           {"as_is": True})
    return _finish(c, b, t_start)
