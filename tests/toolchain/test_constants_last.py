"""onnx2tf 1.29 mis-converted ``Add(constant, tensor)`` on channels-last tensors: the Erf rewrite's
``1 / (1 + p·|x|)`` after a Conv gave PP-OCRv6 det and rec an fp32 TFLite file at cosine 0.35 / 0.30 (issue 14).
Commutative ops get their constant operand second before onnx2tf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2tf")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def conv_erf_onnx(path: Path) -> Path:
    """x[1,3,16,16] → Conv → Erf → Conv → y[1,4,16,16]: Erf on a tensor onnx2tf holds channels-last."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) / 3).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) / 3).astype(np.float32), "W2")]
    nodes = [helper.make_node("Conv", ["x", "W1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Erf", ["h"], ["e"], name="erf"),
             helper.make_node("Conv", ["e", "W2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    graph = helper.make_graph(nodes, "conv_erf", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="session")
def conv_erf_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from toolchain.convert import ConvertOptions, convert

    work = tmp_path_factory.mktemp("conv_erf")
    model = conv_erf_onnx(work / "conv_erf.onnx")
    data = np.random.default_rng(1).standard_normal((24, 3, 16, 16)).astype(np.float32)
    np.savez(work / "cal.npz", x=data[:8])
    np.savez(work / "val.npz", x=data[8:])
    return convert(ConvertOptions.build(model=str(model), out=work / "b", task="features",
                                        calibration=work / "cal.npz", validation=work / "val.npz",
                                        formats=("onnx-fp32", "tflite-fp32", "tflite-fp16")))


def test_erf_after_conv_ships_float_tflite(conv_erf_bundle: Any) -> None:
    report = conv_erf_bundle.report
    assert not report["failed"], report["failed"]
    assert {"model.fp32.tflite", "model.fp16.tflite"} <= set(report["artifacts"]), report["rejected"]
    assert report["artifacts"]["model.fp32.tflite"]["cosine"] > 0.9999


def test_constants_last_swaps_commutative_ops_only() -> None:
    ort = pytest.importorskip("onnxruntime")
    from toolchain.graph_fixes import constants_last

    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [helper.make_node("Add", ["one", "x"], ["a"]), helper.make_node("Sub", ["one", "a"], ["s"]),
             helper.make_node("Mul", ["one", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert constants_last(model) == 2
    assert [list(n.input) for n in model.graph.node] == [["x", "one"], ["one", "a"], ["s", "one"]]
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
