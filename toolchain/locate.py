"""Where a TFLite artifact first answers unlike the fp32 ONNX model, and why when the cause is a known one.

Run only when the gate refuses a float TFLite file. Both models are run on one sample with every intermediate
tensor kept: ONNX through onnxruntime with every node output made a graph output, TFLite with
``experimental_preserve_all_tensors``. onnx2tf renames and re-lays out tensors (NCHW → NHWC), fuses some nodes
(Conv + Add + Relu) and splits others, so tensors are matched by value, not by name: an ONNX tensor is *found*
when some TFLite tensor of the same size holds the same multiset of values (sorted values close; a transpose
leaves them unchanged). The first node (in graph order) whose output is not found, and no tensor a few nodes
below it either (a node folded into its consumers has one), is where the file diverges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.range_paths import LAYOUT_OPS

FP16_MAX = 65504.0
FP16_TINY = 2.0**-24  # smallest float16 subnormal: smaller magnitudes round to 0
_POINTS = 257  # quantiles compared per tensor
_HOPS = 4  # a node not found is taken as fused away when a tensor this near below it is found
_NEAR = 16  # lost nodes searched for an fp16 cause
_TOLERANCE = 0.05  # relative RMS of the sorted values for "the same values"


@dataclass
class Divergence:
    """The first ONNX node whose output the TFLite file does not reproduce."""

    node: str
    op_type: str
    output: str
    cause: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    lost: list[Any] = field(default_factory=list, repr=False)  # the nodes from it on whose outputs are lost

    def line(self) -> str:
        """One line for the artifact's reason."""
        where = f"first differs from ONNX at node {self.node!r} ({self.op_type}, output {self.output!r})"
        return f"{where}: {self.cause}" if self.cause else where


def _signature(values: np.ndarray) -> np.ndarray:
    """Quantiles of ``values`` (float64), the same for any permutation of them; NaN/inf kept."""
    flat = np.sort(np.asarray(values, np.float64).ravel())
    index = np.linspace(0, flat.size - 1, min(_POINTS, flat.size)).round().astype(np.int64)
    return flat[index]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two signatures hold the same values (both finite and close, relative to ``a``'s size)."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return bool(np.array_equal(a, b, equal_nan=True))
    scale = float(np.sqrt(np.mean(a * a)))
    return float(np.sqrt(np.mean((a - b) ** 2))) <= _TOLERANCE * scale + 1e-6


def onnx_intermediates(model: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every float node output of ``model`` (an ``onnx.ModelProto``) on ``feed``, by tensor name."""
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    known = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in known:
                copy.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feed)
    return {n: np.asarray(v) for n, v in zip(names, values, strict=True)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size}


def tflite_tensors(path: Path, feed: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every float tensor of the TFLite file at ``path`` after one run on ``feed`` (the file's inputs in its own
    order, layout and dtype), by tensor name."""
    from device.modelfile import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    interp = cls(model_path=str(path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), feed, strict=True):
        interp.set_tensor(detail["index"], np.asarray(value, detail["dtype"]).reshape(detail["shape"]))
    interp.invoke()
    out = {}
    for detail in interp.get_tensor_details():
        try:
            value = interp.get_tensor(detail["index"])
        except ValueError:
            continue
        if value.dtype.kind == "f" and value.size:
            out[str(detail["name"]) or f"#{detail['index']}"] = np.asarray(value)
    return out


def tflite_input_names(path: Path) -> set[str]:
    """The names of the TFLite file's input tensors (no operator makes them)."""
    from device.modelfile import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    return {str(d["name"]) for d in cls(model_path=str(path)).get_input_details()}


def tflite_intermediates(path: Path, feed: list[np.ndarray]) -> list[np.ndarray]:
    """Every float tensor of the TFLite file at ``path`` after one run on ``feed``."""
    return list(tflite_tensors(path, feed).values())




def _named(tensors: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    """The tensor called ``name``; else the one called as its first fused part (``a;b``: the converter names a
    fused op's output after the op that makes it first, and the fp32 file may fuse less than the int8 one); else
    the one tensor whose name shares a fused part with it."""
    parts = name.split(";")
    for candidate in (name, parts[0]):
        if candidate in tensors:
            return tensors[candidate]
    near = [v for n, v in tensors.items() if set(parts) & set(n.split(";"))]
    return near[0] if len(near) == 1 else None


def matching_nodes(onnx_path: Path, tflite_path: Path, onnx_feed: dict[str, np.ndarray],
                   tflite_feed: list[np.ndarray], names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """For each TFLite tensor name in ``names``, the ONNX node (name, op type) whose output holds the same values
    on one sample (matched as :func:`first_divergence` matches, by value). Names the file lacks, constant tensors
    and tensors that several computing nodes reproduce are left out."""
    import onnx

    model = onnx.load(str(onnx_path))
    onnx_values = onnx_intermediates(model, onnx_feed)
    tensors = tflite_tensors(tflite_path, tflite_feed)
    out: dict[str, tuple[str, str]] = {}
    for name in names:
        value = _named(tensors, name)
        if value is None or float(np.ptp(value)) == 0.0:
            continue
        mine = _signature(value)
        hits = [n for n in model.graph.node if any(o in onnx_values and _holds(onnx_values[o], value, mine)
                                                   for o in n.output)]
        # a match on a node that only moves the values of the one that made them is no ambiguity
        if hits and all(n.op_type in LAYOUT_OPS for n in hits[1:]):
            out[name] = (hits[0].name or hits[0].output[0], hits[0].op_type)
    return out


def _holds(onnx_value: np.ndarray, tflite_value: np.ndarray, signature: np.ndarray | None = None) -> bool:
    """Whether a TFLite tensor holds the values of an ONNX one (same size, same sorted values; ``signature``:
    the TFLite tensor's, when already computed)."""
    if onnx_value.size != tflite_value.size:
        return False
    return _same(_signature(onnx_value), _signature(tflite_value) if signature is None else signature)


def holding_tensors(onnx_path: Path, tflite_path: Path, onnx_feed: dict[str, np.ndarray],
                    tflite_feed: list[np.ndarray], names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """For each ONNX tensor in ``names`` (a node output or a graph input), the TFLite tensors that hold its values
    on one sample: the inverse of :func:`matching_nodes`, matched the same way, by value. A copy in another layout
    (onnx2tf's transposes and reshapes) holds the same values and is listed too; the file's own inputs (made by
    no operator) are not. Tensors constant on the sample (no values to tell apart) and those no TFLite tensor
    holds are left out."""
    import onnx

    model = onnx.load(str(onnx_path))
    values = {**onnx_intermediates(model, onnx_feed), **{k: np.asarray(v) for k, v in onnx_feed.items()}}
    entry = tflite_input_names(tflite_path)
    tensors = {n: v for n, v in tflite_tensors(tflite_path, tflite_feed).items()
               if n not in entry and float(np.ptp(v)) > 0.0}
    signatures: dict[str, np.ndarray] = {}
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        value = values.get(name)
        if value is None or value.dtype.kind != "f" or float(np.ptp(value)) == 0.0:
            continue
        hits = []
        for tf_name, tf_value in tensors.items():
            if tf_value.size == value.size:
                signature = signatures.setdefault(tf_name, _signature(tf_value))
                if _holds(value, tf_value, signature):
                    hits.append(tf_name)
        if hits:
            out[name] = tuple(hits)
    return out


def first_divergence(model: Any, onnx_values: dict[str, np.ndarray], tflite_values: Iterable[np.ndarray],
                     ) -> Divergence | None:
    """The first node of ``model`` whose output is not among ``tflite_values``, nor any tensor just below it."""
    by_size: dict[int, list[np.ndarray]] = {}
    for value in tflite_values:
        by_size.setdefault(value.size, []).append(_signature(value))
    found = set()
    for name, value in onnx_values.items():
        candidates = by_size.get(value.size, [])
        mine = _signature(value) if candidates else None
        if mine is not None and any(_same(mine, s) for s in candidates):
            found.add(name)
    nodes = list(model.graph.node)
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def fused(node: Any) -> bool:
        """Whether a tensor at most ``_HOPS`` nodes below ``node`` is found (``node`` was folded into it)."""
        frontier = [node]
        for _ in range(_HOPS):
            frontier = [c for n in frontier for o in n.output for c in consumers.get(o, [])]
            if any(o in found for n in frontier for o in n.output):
                return True
        return False

    lost = [n for n in nodes if any(o in onnx_values and o not in found for o in n.output) and not fused(n)]
    if not lost:
        return None
    first = lost[0]
    output = next(o for o in first.output if o in onnx_values and o not in found)
    return Divergence(node=first.name or output, op_type=first.op_type, output=output, lost=lost,
                      details={"onnx_tensors_compared": len(onnx_values), "found_in_tflite": len(found)})


def _constants(model: Any) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node values of ``model``, by tensor name."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                out[node.output[0]] = numpy_helper.to_array(value)
    return out


def fp16_cause(constants: dict[str, np.ndarray], node: Any) -> str | None:
    """Why ``node`` cannot survive float16 constants: one of its float constant inputs overflows float16 (becomes
    inf) or underflows it entirely (every nonzero value becomes 0); None when neither."""
    for name in node.input:
        value = constants.get(name)
        if value is None or value.dtype.kind != "f" or not value.size:
            continue
        magnitude = np.abs(value.astype(np.float64))
        if np.any(np.isfinite(magnitude) & (magnitude > FP16_MAX)):
            return f"constant {name!r} (|max| {magnitude.max():.3g}) is outside float16's range (inf in fp16)"
        nonzero = magnitude[magnitude > 0]
        if nonzero.size and np.all(nonzero < FP16_TINY / 2):
            return f"constant {name!r} ({nonzero.max():.3g}) underflows float16 (0 in fp16)"
    return None


def locate(onnx_path: Path, tflite_path: Path, onnx_feed: dict[str, np.ndarray],
           tflite_feed: list[np.ndarray], precision: str) -> Divergence | None:
    """Where the TFLite file at ``tflite_path`` first differs from the ONNX model at ``onnx_path`` on one sample
    (``onnx_feed`` by ONNX input name, ``tflite_feed`` as the file takes it, in its input order), and why when the
    node has a constant that float16 cannot hold (``precision`` fp16)."""
    import onnx

    model = onnx.load(str(onnx_path))
    found = first_divergence(model, onnx_intermediates(model, onnx_feed), tflite_intermediates(tflite_path,
                                                                                             tflite_feed))
    if found is not None and precision == "fp16":
        # the converter folds constants into their neighbours (Mul into MatMul's weights), so the constant that
        # broke may sit on a node just after the first one lost
        constants = _constants(model)
        for node in found.lost[:_NEAR]:
            cause = fp16_cause(constants, node)
            if cause is not None:
                found.cause = cause if node is found.lost[0] else f"{cause}, at node {node.name!r} ({node.op_type})"
                found.details["cause_node"] = node.name
                break
    return found
