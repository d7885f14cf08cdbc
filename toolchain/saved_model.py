"""ONNX → SavedModel with onnx2tf (run in the TensorFlow child), and a Keras SavedModel's signature.

onnx2tf is told to keep every input's shape exactly as ONNX has it, so the logical layout (``NCW``, ``NCHW``...)
is the same for every artifact. Names onnx2tf or TensorFlow would mangle are replaced by safe ones first and
mapped back in every message.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from device.errors import ModelFileError
from toolchain.calibration import InputSpec
from toolchain.failures import InternalFailure, describe, is_internal
from toolchain.tf_common import SavedModel, import_tf, quiet_native, quiet_tf_env
from toolchain.tf_worker import submit


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).lower()


_POSITIONAL = re.compile(r"(input|output)_(\d+)")


def match_keys(logical: list[str], keys: list[str], what: str, label: str) -> dict[str, str]:
    """Map logical tensor names to signature keys: exact, then sanitized, then by position."""
    out: dict[str, str] = {}
    free = list(keys)
    for name in logical:
        hit = name if name in free else next((k for k in free if _sanitize(k) == _sanitize(name)), None)
        if hit is not None:
            out[name] = hit
            free.remove(hit)
    rest = [n for n in logical if n not in out]
    numbered = [_POSITIONAL.fullmatch(k) for k in free]
    if rest and len(rest) == len(free) and all(numbered):
        # onnx2tf's own positional keys (output_0, output_1, ...): by their number, not by a prefix, which
        # matched an ONNX output named "output" to output_2 (silero VAD)
        ranked = sorted(free, key=lambda k: int(_POSITIONAL.fullmatch(k).group(2)))  # type: ignore[union-attr]
        out.update(zip(rest, ranked, strict=True))
        return out
    for name in rest:
        hit = next((k for k in free if _sanitize(k).startswith(_sanitize(name))), None)
        if hit is not None:
            out[name] = hit
            free.remove(hit)
    rest = [n for n in logical if n not in out]
    if len(rest) == len(free):
        out.update(zip(rest, free, strict=True))
    elif rest:
        raise ModelFileError(f"{label}: cannot match {what} {rest} to the SavedModel signature ({keys})")
    return out


def onnx_to_saved_model(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                        outputs: tuple[InputSpec, ...]) -> SavedModel:
    """Convert the fp32 ONNX model with onnx2tf, keeping every input's layout as it is.

    onnx2tf runs in the TensorFlow child process that later makes the TFLite files: TensorFlow is imported
    once per conversion, and never into this process (it would double the peak memory).
    """
    import json

    job = {"kind": "saved_model", "onnx": str(onnx_path.resolve()),
           "inputs": spec_list(inputs), "outputs": spec_list(outputs)}
    reply = json.loads(submit(workdir.resolve(), job, "the SavedModel", tool="onnx2tf").read_text())
    return SavedModel(path=Path(reply["path"]), input_keys=reply["input_keys"], output_keys=reply["output_keys"],
                      producer=reply["producer"])


def spec_list(specs: tuple[InputSpec, ...]) -> list[list[Any]]:
    return [[s.name, list(s.shape), s.dtype] for s in specs]


def spec_tuple(items: list[list[Any]]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec(name, tuple(shape), dtype) for name, shape, dtype in items)


def saved_model_here(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                      outputs: tuple[InputSpec, ...]) -> SavedModel:
    # onnx2tf raises the interpreter's recursion limit to 2**31-1 when imported; left there, deep recursion
    # anywhere later in this process overflows the C stack (a segfault) instead of raising RecursionError.
    recursion_limit = sys.getrecursionlimit()
    try:
        return _onnx_to_saved_model(onnx_path, workdir, inputs, outputs)
    finally:
        sys.setrecursionlimit(recursion_limit)


def _onnx_to_saved_model(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                         outputs: tuple[InputSpec, ...]) -> SavedModel:
    quiet_tf_env()
    out_dir = workdir / "onnx2tf"
    try:
        with quiet_native():
            import onnx2tf
    except ImportError as exc:
        raise ModelFileError(f"onnx2tf is not importable ({exc}); install the host extra") from None
    import onnx

    model = onnx.load(str(onnx_path))
    ops = {n.op_type for n in model.graph.node}
    from toolchain.graph_fixes import constants_last, replace_erf

    # TF's converter cannot lower tf.math.erf (MLIR "could not translate"): Erf (GELU) is rewritten in builtins
    replace_erf(model)
    constants_last(model)  # onnx2tf mis-converts some Add(constant, tensor) on channels-last tensors
    # onnx2tf sanitizes some characters (':' → '__') before matching keep_shape_absolutely_input_names, and
    # TensorFlow rejects others ('@', quotes, braces) in op names: it gets a copy with safe names only.
    renames = safe_names(model)
    safe_path = workdir / "onnx2tf-input.onnx"
    onnx.save(model, str(safe_path))
    back = {new: old for old, new in renames.items()}
    safe_in = [renames.get(s.name, s.name) for s in inputs]
    safe_out = [renames.get(s.name, s.name) for s in outputs]
    try:
        with quiet_native():
            onnx2tf.convert(
                input_onnx_file_path=str(safe_path),
                # Unrolled recurrent layers become plain ops that the int8 quantizer handles; the
                # while-loop form crashes TF's quantizer.
                enable_rnn_unroll=bool(ops & {"LSTM", "GRU", "RNN"}),
                output_folder_path=str(out_dir),
                keep_shape_absolutely_input_names=safe_in,
                copy_onnx_input_output_names_to_tflite=True,
                non_verbose=True,
                verbosity="error",
            )
    except SystemExit as exc:  # onnx2tf exits on some unsupported graphs
        raise ModelFileError(f"{onnx_path.name}: onnx2tf gave up (exit {exc.code}); {unsupported_hint(onnx_path)}") \
            from None
    except Exception as exc:
        if is_internal(exc):
            raise InternalFailure(f"onnx2tf on {onnx_path} failed for a reason that is not the model's "
                                  f"({describe(exc)})") from None
        if isinstance(exc, KeyError) and exc.args and exc.args[0] in back:  # name the tensor as the user knows it
            exc = KeyError(back[exc.args[0]])
        raise ModelFileError(f"{onnx_path.name}: onnx2tf failed ({_unrename(describe(exc), back)}); "
                             f"{unsupported_hint(onnx_path, exc)}") from None
    if not (out_dir / "saved_model.pb").exists():
        raise ModelFileError(f"{onnx_path.name}: onnx2tf wrote no SavedModel; {unsupported_hint(onnx_path)}")
    in_keys, out_keys = _signature_keys(out_dir)
    in_match = match_keys(safe_in, in_keys, "inputs", onnx_path.name)
    out_match = match_keys(safe_out, out_keys, "outputs", onnx_path.name)
    return SavedModel(
        path=out_dir,
        input_keys={s.name: in_match[safe] for s, safe in zip(inputs, safe_in, strict=True)},
        output_keys={s.name: out_match[safe] for s, safe in zip(outputs, safe_out, strict=True)},
        producer="onnx2tf",
    )


_SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


def safe_names(model: Any) -> dict[str, str]:
    """Rename (in place) every tensor and node name of ``model`` that onnx2tf or TensorFlow may mangle or refuse
    (anything but a letter then letters, digits and '_'); returns old → new for the tensor names.

    Graph inputs become ``input_N``, outputs ``output_N``, other tensors ``tensor_N`` and nodes ``node_N``;
    names already safe are kept, so the TFLite file's tensor names stay readable where they can.
    """
    graphs = [model.graph]
    for graph in graphs:  # subgraphs (If/Loop/Scan bodies) share the outer scope's names
        for node in graph.node:
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)
    taken = {v.name for g in graphs for v in (*g.input, *g.output, *g.initializer, *g.value_info)}
    taken |= {name for g in graphs for n in g.node for name in (*n.input, *n.output, n.name)}
    renames: dict[str, str] = {}

    def fresh(prefix: str) -> str:
        index = len(renames)
        while f"{prefix}_{index}" in taken:
            index += 1
        taken.add(f"{prefix}_{index}")
        return f"{prefix}_{index}"

    for prefix, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name and not _SAFE_NAME.fullmatch(value.name) and value.name not in renames:
                renames[value.name] = fresh(prefix)
    for name in sorted(taken):
        if name and not _SAFE_NAME.fullmatch(name) and name not in renames:
            renames[name] = fresh("tensor")
    node_names: dict[str, str] = {}
    for graph in graphs:
        for value in (*graph.input, *graph.output, *graph.initializer, *graph.value_info):
            value.name = renames.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
            if node.name and not _SAFE_NAME.fullmatch(node.name):
                node.name = node_names.setdefault(node.name, renames.get(node.name) or fresh("node"))
    return renames


def _unrename(text: str, back: dict[str, str]) -> str:
    """``text`` with the safe names put back to the model's own (longest first)."""
    for new in sorted(back, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(new)}\b", back[new], text)
    return text


def unsupported_hint(onnx_path: Path, error: BaseException | None = None) -> str:
    """Name the node(s) of the model that most likely stopped onnx2tf, and why."""
    try:
        import onnx
        import onnx2tf.ops as ops_pkg

        known = {p.stem for p in Path(ops_pkg.__file__).parent.glob("*.py")}
        model = onnx.load(str(onnx_path))
        nodes = list(model.graph.node)
        missing = [(n.name or "?", n.op_type) for n in nodes if n.op_type not in known]
        if missing:
            listed = ", ".join(f"{name} ({op})" for name, op in missing[:5])
            return f"onnx2tf has no converter for node(s) {listed}; the ONNX artifacts are still produced"
        tensor = str(error.args[0]) if isinstance(error, KeyError) and error.args else None
        if tensor is not None:
            users = [n for n in nodes if tensor in n.input or tensor in _subgraph_inputs(n)]
            if users:
                node = users[-1]
                where = " (an outer-scope input of its subgraphs)" if tensor in _subgraph_inputs(node) else ""
                return (f"node {node.name or '?'} ({node.op_type}) could not be converted: tensor {tensor!r}{where} "
                        "was not available; the ONNX artifacts are still produced")
        control = [n for n in nodes if n.op_type in ("If", "Loop", "Scan")]
        if control:
            listed = ", ".join(f"{n.name or '?'} ({n.op_type})" for n in control[:5])
            return f"control-flow node(s) {listed} are the likely cause; the ONNX artifacts are still produced"
    except Exception:
        pass
    return "the ONNX artifacts are still produced"


def _subgraph_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for g in graphs:
            produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | \
                {t.name for t in g.initializer}
            for n in g.node:
                names |= {i for i in n.input if i and i not in produced}
                names |= _subgraph_inputs(n)
    return names


def _signature_keys(saved_model: Path) -> tuple[list[str], list[str]]:
    tf = import_tf()
    with quiet_native():
        loaded = tf.saved_model.load(str(saved_model))
    sig = loaded.signatures["serving_default"]
    in_keys = list(sig.structured_input_signature[1].keys())
    out_keys = list(sig.structured_outputs.keys())
    return in_keys, out_keys


def keras_saved_model(saved_model: Path, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...]) -> SavedModel:
    """Describe a SavedModel exported from Keras (signature keys mapped to the ONNX names)."""
    quiet_tf_env()
    in_keys, out_keys = _signature_keys(saved_model)
    return SavedModel(
        path=saved_model,
        input_keys=match_keys([s.name for s in inputs], in_keys, "inputs", str(saved_model)),
        output_keys=match_keys([s.name for s in outputs], out_keys, "outputs", str(saved_model)),
        producer="keras",
    )
