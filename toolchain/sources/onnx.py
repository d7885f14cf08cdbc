"""ONNX importer: one self-contained fp32 file with every input dim fixed.

External-data files are pulled in, opsets below 13 are upgraded, dynamic axes are fixed from
``--input-shape`` or the calibration data (a dynamic batch axis becomes 1), and onnxsim folds
constants and propagates the now static shapes. Unsupported or unreadable models fail with one
line naming the file (and the node when the checker names one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.errors import BadInput, ModelFileError
from toolchain.sources import SourceModel, SourceOptions

MIN_OPSET = 13


def load_onnx(path: Path, workdir: Path, opts: SourceOptions) -> SourceModel:
    """Load an ONNX file (with external data beside it) and write the fixed fp32 model to ``workdir``."""
    import onnx

    if not path.is_file():
        raise BadInput(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path}: its external-data file is missing ({exc.filename or exc}); keep the data "
                             "files next to the .onnx") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    notes: list[str] = []
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelFileError(f"{path}: external data could not be loaded; keep the data files next to the .onnx")
    if _used_external_data(path, model):
        notes.append("external-data weights were inlined into one file")
    out = workdir / "model.fp32.onnx"
    finalize(model, out, opts, label=str(path), notes=notes)
    return SourceModel(kind="onnx", onnx_path=out, notes=notes)


def _used_external_data(path: Path, model: Any) -> bool:
    import onnx

    try:
        bare = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in bare.graph.initializer) and bool(model)


def opset_of(model: Any) -> int:
    """The default-domain opset the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def graph_inputs(model: Any) -> list[Any]:
    """The real inputs of a graph (initializers listed as inputs by old exporters are left out)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def finalize(model: Any, out: Path, opts: SourceOptions, label: str, notes: list[str]) -> None:
    """Upgrade, fix input dims, simplify, check and save ``model`` to ``out`` as one file."""
    import onnx

    opset = opset_of(model)
    if 0 < opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
            notes.append(f"opset {opset} upgraded to {MIN_OPSET}")
        except Exception as exc:
            raise ModelFileError(f"{label}: opset {opset} is below {MIN_OPSET} and could not be upgraded "
                                 f"({type(exc).__name__}: {exc}); re-export with opset >= {MIN_OPSET}") from None
    inputs = graph_inputs(model)
    if opts.input_names:
        if len(opts.input_names) != len(inputs):
            raise BadInput(f"--input-name gives {len(opts.input_names)} names for {len(inputs)} model inputs")
        _rename(model, {i.name: new for i, new in zip(inputs, opts.input_names, strict=True)}, inputs=True)
        inputs = graph_inputs(model)
    if opts.output_names:
        outs = list(model.graph.output)
        if len(opts.output_names) != len(outs):
            raise BadInput(f"--output-name gives {len(opts.output_names)} names for {len(outs)} model outputs")
        _rename(model, {o.name: new for o, new in zip(outs, opts.output_names, strict=True)}, inputs=False)
    unknown = [n for n in opts.input_shapes if n and n not in {i.name for i in inputs}]
    if unknown:
        raise BadInput(f"--input-shape {unknown[0]}:...: the model has no input {unknown[0]!r} (inputs: "
                       f"{', '.join(i.name for i in inputs)})")
    _lower_ir_version(model, notes)
    fixed = _fix_input_dims(model, inputs, opts, label)
    if fixed:
        notes.append("dynamic axes fixed: " + "; ".join(fixed))
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
    except Exception as exc:  # onnxsim fails on some exotic graphs; the model is still usable unsimplified
        notes.append(f"onnxsim could not simplify the model ({type(exc).__name__}); kept as exported")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{label}: the ONNX checker rejects the model: {first}") from None
    if model.ByteSize() > 2_000_000_000:
        raise ModelFileError(f"{label}: larger than 2 GB; too large for an edge bundle")
    onnx.save(model, str(out), save_as_external_data=False)


def _lower_ir_version(model: Any, notes: list[str]) -> None:
    """Record the lowest IR version the model's opsets need: the onnx package writes its newest one (12 for
    onnx 1.19), which onnxruntime 1.23 (max 11) and older device runtimes refuse to load."""
    import onnx

    try:
        need = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # an opset newer than this onnx knows: leave the file as it is
        return
    if model.ir_version > need:
        notes.append(f"IR version {model.ir_version} lowered to {need}, the lowest its opsets need")
        model.ir_version = need


def _rename(model: Any, mapping: dict[str, str], inputs: bool) -> None:
    for node in model.graph.node:
        seq = node.input if inputs else node.output
        for i, name in enumerate(seq):
            if name in mapping:
                seq[i] = mapping[name]
    if not inputs:
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name in mapping:
                    node.input[i] = mapping[name]
    for value in (model.graph.input if inputs else model.graph.output):
        if value.name in mapping:
            value.name = mapping[value.name]


def _fix_input_dims(model: Any, inputs: list[Any], opts: SourceOptions, label: str) -> list[str]:
    fixed = []
    for index, value in enumerate(inputs):
        dims = value.type.tensor_type.shape.dim
        given = opts.input_shapes.get(value.name) or (opts.input_shapes.get("") if index == 0 else None)
        hint = opts.hint_shapes.get(value.name)
        if given is not None:
            if len(given) != len(dims):
                raise BadInput(f"--input-shape for {value.name!r} has {len(given)} dims but the model input has "
                               f"{len(dims)}")
            for i, (dim, want) in enumerate(zip(dims, given, strict=True)):
                if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != want:
                    raise BadInput(f"--input-shape for {value.name!r}: dim {i} is fixed at {dim.dim_value} in the "
                                   f"model, not {want}")
        for i, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            name = dim.dim_param or "?"
            if given is not None:
                want = given[i]
            elif i == 0:
                want = 1
            elif hint is not None and len(hint) == len(dims):
                want = hint[i]
            elif hint is not None and len(hint) == len(dims) - 1:
                want = hint[i - 1]
            else:
                raise BadInput(f"{label}: input {value.name!r} dim {i} ({name}) is dynamic; fix it with "
                               f"--input-shape {value.name}:" + ",".join(
                                   str(d.dim_value) if d.dim_value > 0 else "N" for d in dims))
            dim.Clear()
            dim.dim_value = int(want)
            fixed.append(f"{value.name}[{i}] {name} = {want}")
    return fixed
