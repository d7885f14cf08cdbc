"""Files the user already has: a ``.tflite`` file or an already-quantized ``.onnx`` is bundled as it is.

No re-export and no re-quantization: the file becomes the bundle's one artifact (its precision read
from the file), with a manifest, golden vectors made by running it, and the usual verify. Its logical
tensors are the file's own (a quantized int8 input or output is float on the logical side, with the
file's scale and zero point).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import BadInput, ModelFileError
from device.manifest import ArtifactTensor, Quantization
from toolchain.calibration import InputSpec

# Operators only a quantized ONNX model has.
QUANTIZED_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                      "ConvInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"}


@dataclass
class AsIs:
    """One file to bundle unchanged, described the way the pipeline needs it."""

    key: str  # a FORMATS key: tflite-fp32 ... or onnx-int8
    path: Path  # the file (a copy in the work directory)
    inputs: tuple[InputSpec, ...]
    outputs: tuple[InputSpec, ...]
    art_inputs: tuple[ArtifactTensor, ...]
    art_outputs: tuple[ArtifactTensor, ...]
    notes: list[str] = field(default_factory=list)


def as_is_kind(model: str) -> str | None:
    """``tflite`` or ``onnx`` when ``model`` is a file to bundle as it is, else ``None``."""
    path = Path(model)
    if not path.is_file():
        return None
    if path.suffix.lower() == ".tflite":
        return "tflite"
    if path.suffix.lower() == ".onnx":
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception:  # the ONNX importer reports it in one line
            return None
        if {n.op_type for n in graph.node} & QUANTIZED_ONNX_OPS:
            return "onnx"
    return None


def _quant(q: dict[str, Any] | None) -> Quantization | None:
    if not q or not q.get("scale"):
        return None
    return Quantization(scale=tuple(q["scale"]), zero_point=tuple(q["zero_point"]), axis=q.get("axis"))


def _shape(name: str, shape: list[Any], given: dict[str, tuple[int, ...]], first: bool, label: str) -> tuple[int, ...]:
    want = given.get(name) or (given.get("") if first else None)
    dims = tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in shape)
    if want is not None:
        if len(want) != len(dims) or any(d > 0 and d != w for d, w in zip(dims, want, strict=False)):
            raise BadInput(f"--input-shape for {name!r}: {list(want)} does not fit the file's {list(shape)}")
        return tuple(want)
    if any(d < 1 for d in dims):
        example = ",".join(str(d) if d > 0 else "N" for d in dims)
        raise BadInput(f"{label}: input {name!r} has dynamic axes {list(shape)}; give --input-shape {name}:{example}")
    return dims


def prepare_tflite(path: Path, work: Path, precision_files: dict[str, str],
                   input_shapes: dict[str, tuple[int, ...]]) -> AsIs:
    """Read ``path`` in a child process (first contact) and describe it."""
    from device.modelfile import check_model_file, probe_tflite_files

    check_model_file(path, expected="tflite")
    info = probe_tflite_files([path])[0]
    precision = info.precision
    key = f"tflite-{precision}"
    copy = work / precision_files[key]
    shutil.copyfile(path, copy)
    keys = info.details.get("signature_keys") or {}
    names = [keys.get(t.name, t.name) for t in info.inputs + info.outputs]
    if len(set(names)) != len(names):  # the logical names must tell the tensors apart
        keys = {}
    specs_in, specs_out, art_in, art_out = [], [], [], []
    for i, t in enumerate(info.inputs):
        name = keys.get(t.name, t.name)
        shape = _shape(name, t.shape, input_shapes, i == 0, str(path))
        quant = _quant(t.quantization)
        logical = "float32" if quant is not None and t.dtype in ("int8", "uint8", "int16") else t.dtype
        specs_in.append(InputSpec(name, shape, logical))
        art_in.append(ArtifactTensor(name=t.name, shape=shape, dtype=t.dtype, quantization=quant))
    for t in info.outputs:
        shape = tuple(int(d) if isinstance(d, int) and d > 0 else 1 for d in t.shape)
        quant = _quant(t.quantization)
        logical = "float32" if quant is not None and t.dtype in ("int8", "uint8", "int16") else t.dtype
        specs_out.append(InputSpec(keys.get(t.name, t.name), shape, logical))
        art_out.append(ArtifactTensor(name=t.name, shape=shape, dtype=t.dtype, quantization=quant))
    notes = [f"{path.name} bundled as it is ({precision}; not re-converted or re-quantized)"]
    return AsIs(key=key, path=copy, inputs=tuple(specs_in), outputs=tuple(specs_out), art_inputs=tuple(art_in),
                art_outputs=tuple(art_out), notes=notes)


def prepare_onnx(path: Path, work: Path, precision_files: dict[str, str],
                 input_shapes: dict[str, tuple[int, ...]], hint_shapes: dict[str, tuple[int, ...]]) -> AsIs:
    """An already-quantized ONNX file: unchanged, unless dynamic input axes must be fixed for the manifest."""
    import onnx

    from toolchain.sources import SourceOptions
    from toolchain.sources.onnx import _fix_input_dims, graph_inputs
    from toolchain.validate import onnx_io

    key = "onnx-int8"
    copy = work / precision_files[key]
    model = onnx.load(str(path), load_external_data=True)
    notes = [f"{path.name} is already quantized: bundled as it is (not re-quantized)"]
    graph_in = graph_inputs(model)
    if "" in hint_shapes and len(graph_in) == 1:  # an .npy file: the one input's
        hint_shapes = {graph_in[0].name: hint_shapes[""]}
    fixed = _fix_input_dims(model, graph_in, SourceOptions(input_shapes=input_shapes, hint_shapes=hint_shapes),
                            str(path))
    if fixed:
        notes.append("dynamic axes fixed: " + "; ".join(fixed))
        onnx.save(model, str(copy), save_as_external_data=False)
    else:
        shutil.copyfile(path, copy)
    try:
        inputs, outputs = onnx_io(copy)
    except Exception as exc:
        raise ModelFileError(f"{path}: onnxruntime cannot run it ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''})") from None
    art_in = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype) for s in inputs)
    art_out = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype) for s in outputs)
    return AsIs(key=key, path=copy, inputs=inputs, outputs=outputs, art_inputs=art_in, art_outputs=art_out,
                notes=notes)
