"""TFLite export: ONNX → SavedModel (onnx2tf) → TFLite (TensorFlow's converter).

onnx2tf is told to keep every input's shape exactly as ONNX has it, so the logical layout
(``NCW``, ``NCHW``...) is the same for every artifact; whatever layout a tensor of the TFLite file
still has is worked out by :func:`describe_tflite` and recorded, so the runner can adapt.
We drive ``tf.lite.TFLiteConverter`` ourselves from the SavedModel onnx2tf writes (onnx2tf's own
``-oiqt`` wants calibration files or downloads some). Keras models skip onnx2tf.

Precisions: ``fp32``; ``fp16`` (float16 weights); ``int8`` (full-integer kernels, float I/O);
``int8-io`` (full-integer with int8 input and output tensors).
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelFileError
from device.manifest import ArtifactTensor, Quantization
from toolchain.calibration import DataSet, InputSpec
from toolchain.failures import InternalFailure, describe, is_internal
from toolchain.saved_model import keras_saved_model, match_keys, onnx_to_saved_model, spec_list
from toolchain.tf_common import SavedModel, import_tf, quiet_native
from toolchain.tf_worker import WORKERS, Worker, close_workers, submit

# Names the rest of the converter reaches through this module (tests patch them here).
__all__ = [
    "WORKERS",
    "SavedModel",
    "TfNoise",
    "TfliteOptions",
    "Worker",
    "close_workers",
    "convert_saved_model",
    "describe_tflite",
    "import_tf",
    "keras_saved_model",
    "layout_permutation",
    "match_keys",
    "onnx_to_saved_model",
    "quiet_native",
    "representative",
    "sensitive_tf_nodes",
]


TFLITE_PRECISIONS = ("fp32", "fp16", "int8", "int8-io")


DEFAULT_LAYOUTS = {3: "NCW", 4: "NCHW", 5: "NCDHW"}  # ONNX's channels-first conventions


@dataclass(frozen=True)
class TfliteOptions:
    """Knobs of one TFLite conversion (the accuracy gate's remedies turn them)."""

    per_channel: bool = True
    denylist: tuple[str, ...] = ()  # TF node names kept in float (quantization debugger)


def _run_worker(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet, job: dict[str, Any],
                what: str) -> Path:
    """Run one TensorFlow job on ``sm`` in the worker child process and return the file it wrote."""
    workdir = sm.path.parent.resolve()  # the child works in its own cwd: every path it gets is absolute
    data_path = workdir / f"tflite-data-{calib.sha256()[:16]}.npz"
    if not data_path.exists():
        np.savez(data_path, **{f"in{i}": calib.arrays[s.name] for i, s in enumerate(inputs)})
    job = {**job, "saved_model": str(sm.path.resolve()), "input_keys": sm.input_keys, "output_keys": sm.output_keys,
           "producer": sm.producer, "inputs": spec_list(inputs), "data": str(data_path)}
    return submit(workdir, job, what)


def convert_saved_model(sm: SavedModel, precision: str, inputs: tuple[InputSpec, ...], calib: DataSet,
                        options: TfliteOptions = TfliteOptions()) -> bytes:
    """One TFLite flatbuffer of ``sm`` at ``precision`` (made in a child process)."""
    if precision not in TFLITE_PRECISIONS:
        raise ValueError(f"unknown TFLite precision {precision!r}")
    job = {"kind": "convert", "precision": precision, "per_channel": options.per_channel,
           "denylist": list(options.denylist)}
    return _run_worker(sm, inputs, calib, job, precision).read_bytes()


def convert_here(sm: SavedModel, precision: str, inputs: tuple[InputSpec, ...], calib: DataSet,
                  options: TfliteOptions) -> bytes:
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(sm.path))
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision in ("int8", "int8-io"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(sm, inputs, calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if precision == "int8-io":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        if not options.per_channel:
            conv._experimental_disable_per_channel = True
        if options.denylist:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            debug_options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(options.denylist))
            with quiet_native():
                debugger = _debugger(tf, conv, sm, inputs, calib, debug_options)
                if precision == "int8":
                    return bytes(debugger.get_nondebug_quantized_model())
                return _int8_io_quantized(tf, conv, debugger, debug_options)
    elif precision != "fp32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    try:
        with quiet_native():
            return bytes(conv.convert())
    except Exception as exc:
        if is_internal(exc):
            raise InternalFailure(f"TFLite {precision} conversion failed ({describe(exc)})") from None
        raise ModelFileError(f"TFLite {precision} conversion failed ({describe(exc)})") from None


def _int8_io_quantized(tf: Any, conv: Any, debugger: Any, debug_options: Any) -> bytes:
    """The debugger's quantization of its calibrated model with int8 input and output: its own
    ``get_nondebug_quantized_model`` ignores ``inference_input_type`` and gave int8-io files float I/O."""
    tf_convert = importlib.import_module("tensorflow.lite.python.convert")  # TF internal, as the debugger uses it
    return bytes(tf_convert.mlir_quantize(
        debugger.calibrated_model, disable_per_channel=conv._experimental_disable_per_channel,
        fully_quantize=debug_options.fully_quantize, input_data_type=tf.int8, output_data_type=tf.int8,
        denylisted_ops=debug_options.denylisted_ops, denylisted_nodes=debug_options.denylisted_nodes))


def representative(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet) -> Any:
    """A representative-dataset generator keyed by signature input name."""

    def gen() -> Iterator[dict[str, Any]]:
        for i in range(calib.count):
            sample = calib.sample(i, inputs)
            yield {sm.input_keys[name]: value.astype(np.float32) if value.dtype.kind == "f" else value
                   for name, value in sample.items()}

    return gen


@dataclass(frozen=True)
class TfNoise:
    """One tensor of the int8 TFLite file and the error its int8 version adds (the quantization debugger's
    root-mean-square error in units of the tensor's int8 step, higher is noisier). ``tensor`` is the TF name
    (fused ops joined by ``;``), which is also the node name the converter's denylist takes."""

    tensor: str
    rmse_per_step: float


def sensitive_tf_nodes(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet,
                       limit: int = 4) -> list[TfNoise]:
    """TF tensors whose int8 version adds the most error, noisiest first, per the TFLite quantization debugger."""
    import json

    out = _run_worker(sm, inputs, calib, {"kind": "debug", "limit": limit}, "quantization debugger")
    return [TfNoise(str(name), float(value)) for name, value in json.loads(out.read_text())]


def _debugger(tf: Any, conv: Any, sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet,
              debug_options: Any = None) -> Any:
    """TF's quantization debugger over ``conv``, fed ``calib`` in the order of its interpreter's inputs (it sets
    them by position)."""
    order: list[str] = []

    def in_order() -> Iterator[list[Any]]:
        for feeds in representative(sm, inputs, calib)():
            yield [feeds[key] for key in order]

    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=in_order,
                                                         debug_options=debug_options)
    order += _input_order(debugger._quant_interpreter)
    return debugger


def _input_order(interpreter: Any) -> list[str]:
    """The signature keys of ``interpreter``'s inputs in its own input order. TensorFlow sorts a signature's
    inputs by key, so a model whose ONNX inputs are not in that order (silero VAD: input, sr, h, c) was fed
    the wrong tensors and the sensitive-node search failed."""
    by_index = {index: key for key, index in
                interpreter._get_full_signature_list()["serving_default"]["inputs"].items()}
    return [by_index[d["index"]] for d in interpreter.get_input_details()]


def sensitive_here(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet,
                   limit: int) -> list[tuple[str, float]]:
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(sm.path))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(sm, inputs, calib.take(min(calib.count, 64)))
    with quiet_native():
        debugger = _debugger(tf, conv, sm, inputs, calib.take(min(calib.count, 32)))
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    import csv

    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    scored = []
    for row in rows:
        try:
            rmse, scale = float(row["mean_squared_error"]) ** 0.5, float(row["scale"])
        except (KeyError, ValueError):
            continue
        if scale > 0 and np.isfinite(rmse):
            scored.append((rmse / scale, row.get("tensor_name", "")))
    scored.sort(reverse=True)
    return [(name, value) for value, name in scored if name][:limit]


def describe_tflite(content: bytes, sm: SavedModel, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...],
                    logical_layouts: dict[str, str | None]) -> tuple[tuple[ArtifactTensor, ...],
                                                                     tuple[ArtifactTensor, ...]]:
    """The file's input and output tensors, in the manifest's logical order, with layout and int8 parameters.

    ``ArtifactTensor.name`` is the tensor's name inside the TFLite file; ``layout`` is the logical
    layout permuted the way the file holds it (recorded only when the file differs from the logical
    layout, or when the logical layout is known).
    """
    from device.modelfile import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    interp = cls(model_content=content)
    runner = interp.get_signature_runner()
    details = {d["index"]: d for d in interp.get_input_details() + interp.get_output_details()}
    sig_in = runner.get_input_details()
    sig_out = runner.get_output_details()

    def one(spec: InputSpec, key: str, sig: dict[str, Any]) -> ArtifactTensor:
        d = details[sig[key]["index"]] if sig[key].get("index") in details else sig[key]
        shape = tuple(int(x) for x in d["shape"])
        if spec.shape == () and len(shape) == 1 and shape[0] in (1, -1):
            shape = (1,)  # onnx2tf holds an ONNX scalar as one element; the runtime adapter reshapes it
        if tuple(shape) != tuple(spec.shape) and logical_layouts.get(spec.name) is None:
            # The file holds this tensor permuted (onnx2tf's channels-last): give the logical side
            # ONNX's channels-first names so the permutation can be recorded and undone.
            logical_layouts[spec.name] = DEFAULT_LAYOUTS.get(len(spec.shape))
        layout = _permuted_layout(spec.shape, shape, logical_layouts.get(spec.name))
        qp = d.get("quantization_parameters") or {}
        quant = None
        scales = np.asarray(qp.get("scales", []))
        if np.dtype(d["dtype"]).kind in "iu" and scales.size:
            zps = np.asarray(qp.get("zero_points", []))
            quant = Quantization(scale=tuple(float(s) for s in scales), zero_point=tuple(int(z) for z in zps),
                                 axis=int(qp.get("quantized_dimension", 0)) if scales.size > 1 else None)
        return ArtifactTensor(name=str(d.get("name", key)), shape=shape, dtype=np.dtype(d["dtype"]).name,
                              layout=layout, quantization=quant)

    ins = tuple(one(s, sm.input_keys[s.name], sig_in) for s in inputs)
    outs = tuple(one(s, sm.output_keys[s.name], sig_out) for s in outputs)
    return ins, outs


def _permuted_layout(logical: tuple[int, ...], actual: tuple[int, ...], layout: str | None) -> str | None:
    """The artifact layout string: the logical layout letters permuted to match ``actual``."""
    if tuple(logical) == tuple(actual):
        return layout
    letters = layout or "ABCDEFGH"[: len(logical)]
    if len(logical) != len(actual):
        return None
    # onnx2tf moves channels last: prefer that permutation when it fits.
    rank = len(logical)
    preferred = (0, *range(2, rank), 1)
    candidates = [preferred, *permutations(range(rank))]
    for perm in candidates:
        if tuple(logical[p] for p in perm) == tuple(actual):
            return "".join(letters[p] for p in perm)
    return None


def layout_permutation(logical: str, artifact: str) -> tuple[int, ...]:
    """Axes to transpose a logical-layout array into the artifact's layout."""
    return tuple(logical.index(c) for c in artifact)
