"""`Erf` (exact GELU, PP-OCRv6 det/rec) reaches TFLite (issue 14): TensorFlow's converter stopped with
"Could not translate MLIR to FlatBuffer" on every TFLite artifact. Erf is rewritten in builtins for the TFLite
path; onnx2tf's own pseudo Erf gave NaN at x = 0 in the fp16 file (its 1e-11 is 0 in fp16).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2tf")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def gelu_onnx(path: Path) -> Path:
    """x[1,16] → MatMul → GELU (0.5·h·(1 + erf(h/√2))) → MatMul → y[1,4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 32)) / 4).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((32, 4)) / 4).astype(np.float32), "W2"),
             numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Div", ["h", "sqrt2"], ["hs"]),
             helper.make_node("Erf", ["hs"], ["e"]), helper.make_node("Add", ["e", "one"], ["e1"]),
             helper.make_node("Mul", ["h", "e1"], ["g"]), helper.make_node("Mul", ["g", "half"], ["gelu"]),
             helper.make_node("MatMul", ["gelu", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_gelu_model_ships_every_tflite_artifact(tmp_path: Path) -> None:
    from toolchain.convert import ConvertOptions, convert

    model = gelu_onnx(tmp_path / "gelu.onnx")
    data = 2 * np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)
    data[::4] = 0.0  # GELU of exact zeros (padding, silence): the fp16 pseudo Erf's 0/0
    np.savez(tmp_path / "cal.npz", x=data[:32])
    np.savez(tmp_path / "val.npz", x=data[32:])
    res = convert(ConvertOptions.build(model=str(model), out=tmp_path / "b", task="features",
                                 calibration=tmp_path / "cal.npz", validation=tmp_path / "val.npz",
                                 formats=("onnx-fp32", "tflite-fp32", "tflite-fp16", "tflite-int8")))
    assert not res.report["failed"], res.report["failed"]
    arts = res.report["artifacts"]
    assert {"model.fp32.tflite", "model.fp16.tflite", "model.int8.tflite"} <= set(arts), res.report["rejected"]
    assert arts["model.fp32.tflite"]["cosine"] > 0.9999 and arts["model.fp16.tflite"]["cosine"] > 0.999


def test_replaced_erf_matches_erf_everywhere() -> None:
    """The rewrite against onnxruntime's Erf, zero and large values included (A&S 7.1.26: error < 1.5e-7)."""
    ort = pytest.importorskip("onnxruntime")
    from toolchain.graph_fixes import replace_erf

    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"], name="Erf_0")], "erf",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 9])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.array([[-40.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 40.0]], np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert replace_erf(model) == 1 and "Erf" not in [n.op_type for n in model.graph.node]
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=2e-7)
