"""`If` nodes are inlined before quantization and TFLite export (issue 14: openwakeword hey_jarvis, silero VAD).

Two traits, each in a model built here: a condition that depends on the data with a branch reading outer-scope
initializers (hey_jarvis: onnx2tf KeyError), and a condition fixed by the input shapes with every quantizable op
inside the branches (silero VAD: "nothing to quantize").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from toolchain.graph_fixes import fold_ifs  # noqa: E402


def _branch(name: str, weight: str, out: str, extra_init: list | None = None) -> onnx.GraphProto:
    """x @ weight → Sigmoid, reading x and the weight from the outer scope (or its own initializer)."""
    nodes = [helper.make_node("MatMul", ["x", weight], [f"{name}_mm"], name=f"{name}_MatMul"),
             helper.make_node("Sigmoid", [f"{name}_mm"], [out], name=f"{name}_Sigmoid")]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                             extra_init or [])


def data_if_model(path: Path) -> Path:
    """hey_jarvis's trait: p = sigmoid(x @ W1); if max(p) >= 0.5 run a verifier on outer-scope x, W2 else p."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 1)).astype(np.float32), "W1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 1)).astype(np.float32), "W2")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    then = _branch("verify", "W2", "p2")
    other = helper.make_graph([helper.make_node("Identity", ["p"], ["p1"])], "keep", [],
                              [helper.make_tensor_value_info("p1", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"]),
             helper.make_node("ReduceMax", ["p"], ["pm"], keepdims=0),
             helper.make_node("GreaterOrEqual", ["pm", "half"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="If_32", then_branch=then, else_branch=other)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w1, w2, half])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def shape_if_model(path: Path) -> Path:
    """silero's trait: every op in the branches; the condition is Shape(x)[1] == 8, fixed by the input shape.

    Both branches define the same inner names (as exported branches do), and the else branch has its own
    initializer: inlining must rename them apart.
    """
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    own = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "Wb")
    eight = numpy_helper.from_array(np.array([8], np.int64), "eight")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
             helper.make_node("Equal", ["n", "eight"], ["c1"]),
             helper.make_node("Squeeze", ["c1"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="If_25", then_branch=_branch("b", "W", "out"),
                              else_branch=_branch("b", "Wb", "out", [own]))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, eight, one])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_data_condition_becomes_where_with_outer_scope_reads(tmp_path: Path) -> None:
    model = data_if_model(tmp_path / "m.onnx")
    xs = [np.random.default_rng(s).standard_normal((1, 8)).astype(np.float32) * 3 for s in range(8)]
    before = [_run(model, x) for x in xs]
    notes = fold_ifs(model)
    assert "1 If node(s) inlined" in notes[0] and "Where selects" in notes[0]
    ops = [n.op_type for n in onnx.load(str(model)).graph.node]
    assert "If" not in ops and "Where" in ops
    for x, want in zip(xs, before, strict=True):
        np.testing.assert_allclose(_run(model, x), want, rtol=1e-6)


def test_shape_condition_keeps_the_taken_branch_only(tmp_path: Path) -> None:
    model = shape_if_model(tmp_path / "m.onnx")
    x = np.random.default_rng(3).standard_normal((1, 8)).astype(np.float32)
    before = _run(model, x)
    notes = fold_ifs(model)
    assert "always then" in notes[0]
    graph = onnx.load(str(model)).graph
    assert [n.op_type for n in graph.node].count("MatMul") == 1 and "If" not in [n.op_type for n in graph.node]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6)


def test_a_graph_without_if_is_left_alone(tmp_path: Path) -> None:
    from tests.toolchain.test_field_classes import mlp_onnx

    model = mlp_onnx(tmp_path / "m.onnx")
    before = model.read_bytes()
    assert fold_ifs(model) == []
    assert model.read_bytes() == before


def test_convert_quantizes_and_exports_what_was_inside_if(tmp_path: Path) -> None:
    """Before: onnx2tf failed on every TFLite (KeyError on the outer-scope weight); the verifier's MatMul
    was not quantized. (onnxsim already folds an If whose condition the fixed shapes decide.)"""
    pytest.importorskip("onnx2tf")
    from toolchain.convert import ConvertOptions, convert

    model = data_if_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=3 * np.random.default_rng(4).standard_normal((32, 8)).astype(np.float32))
    res = convert(ConvertOptions.build(model=str(model), out=tmp_path / "b", task="features", max_drop=100.0,
                                 calibration=tmp_path / "cal.npz", formats=("onnx-fp32", "onnx-int8", "tflite-fp32")))
    assert not res.report["failed"], res.report["failed"]
    assert {"model.int8.onnx", "model.fp32.tflite"} <= set(res.report["artifacts"])
    assert any("If node(s) inlined" in n for n in res.report["notes"]), res.report["notes"]
    import onnx as onnx_mod

    int8 = onnx_mod.load(str(tmp_path / "b" / "model.int8.onnx")).graph
    assert sum(n.op_type == "QuantizeLinear" for n in int8.node) >= 2  # both MatMuls, the verifier's too
