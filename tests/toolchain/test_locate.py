"""A refused float TFLite artifact names the first ONNX node it answers unlike, and the cause when known
(issue 14: PP-OCRv6 det's fp16 file was refused only with "drop 100.000 > max 10.0")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2tf")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def overflow_onnx(path: Path) -> Path:
    """x[1,16] → MatMul → Mul by 1e6 (inf in float16) → Relu → Mul by 1e-6 → MatMul → y[1,4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 32)) / 4).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((32, 4)) / 4).astype(np.float32), "W2"),
             numpy_helper.from_array(np.full(32, 1e6, np.float32), "big"),
             numpy_helper.from_array(np.full(32, 1e-6, np.float32), "small")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="first_matmul"),
             helper.make_node("Mul", ["h", "big"], ["hb"], name="scale_up"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "small"], ["rs"], name="scale_down"),
             helper.make_node("MatMul", ["rs", "W2"], ["y"], name="last_matmul")]
    graph = helper.make_graph(nodes, "overflow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="session")
def overflow_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from toolchain.convert import ConvertOptions, convert

    work = tmp_path_factory.mktemp("locate")
    model = overflow_onnx(work / "overflow.onnx")
    data = np.random.default_rng(1).standard_normal((48, 16)).astype(np.float32)
    np.savez(work / "cal.npz", x=data[:16])
    np.savez(work / "val.npz", x=data[16:])
    return convert(ConvertOptions.build(model=str(model), out=work / "b", task="features",
                                        calibration=work / "cal.npz", validation=work / "val.npz",
                                        formats=("onnx-fp32", "tflite-fp32", "tflite-fp16")))


def test_refused_fp16_names_node_and_cause(overflow_bundle: Any) -> None:
    report = overflow_bundle.report
    assert "model.fp32.tflite" in report["artifacts"], report["rejected"]
    entry = report["rejected"]["model.fp16.tflite"]
    assert "node 'scale_up' (Mul)" in entry["reason"], entry["reason"]
    assert "'big'" in entry["reason"] and "outside float16's range" in entry["reason"], entry["reason"]
    assert entry["divergence"]["cause_node"] == "scale_up"  # folded into first_matmul's weights, the first lost


def test_first_divergence_skips_fused_tensors() -> None:
    """A tensor the file does not hold (fused away) is not the divergence when a tensor below it is found."""
    from toolchain.locate import first_divergence

    model = onnx.load_from_string(helper.make_model(helper.make_graph(
        [helper.make_node("Neg", ["x"], ["a"], name="fused"), helper.make_node("Relu", ["a"], ["b"], name="kept"),
         helper.make_node("Exp", ["b"], ["c"], name="wrong"), helper.make_node("Neg", ["c"], ["y"], name="after")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])])).SerializeToString())
    x = np.linspace(-2, 2, 8).astype(np.float32)
    onnx_values = {"a": -x, "b": np.maximum(-x, 0), "c": np.exp(np.maximum(-x, 0)), "y": -np.exp(np.maximum(-x, 0))}
    tflite_values = [x[::-1].copy(), np.maximum(-x, 0)[::-1].copy(), np.zeros(8, np.float32)]  # permuted; "a" fused
    found = first_divergence(model, onnx_values, tflite_values)
    assert found is not None and found.node == "wrong" and found.output == "c"
