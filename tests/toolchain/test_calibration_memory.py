"""Calibration with bounded memory (issue 14): PP-OCR det's entropy/percentile calibration held every activation of
every sample, grew to 24 GB and was killed by the kernel with no message. Histogram calibration now runs in passes
that fit the memory available, and a model of which one sample does not fit is refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.errors import ModelFileError

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from toolchain import quantize as q  # noqa: E402
from toolchain.calibration import DataSet, InputSpec  # noqa: E402


def conv_map_model(path: Path, size: int = 32) -> Path:
    """A detector's trait: a full-resolution map through Conv → Relu → Conv → Sigmoid (activations ≫ the input)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((1, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["b"], ["y"], name="sigmoid")]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, size, size])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_activation_bytes_sums_every_tensor_of_one_inference(tmp_path: Path) -> None:
    model = conv_map_model(tmp_path / "m.onnx")
    # a and r: 8×32×32 floats each; b and y: 1×32×32 each
    assert q.activation_bytes(model) == 4 * (2 * 8 * 32 * 32 + 2 * 32 * 32)


def test_stride_is_the_largest_divisor_that_fits() -> None:
    model = Path("det.onnx")
    budget = int(1000 * q.MEMORY_SHARE)  # 400: four samples of 100
    assert q.calibration_stride(model, 100, 12, 1000, "x", "fix") == 4
    assert q.calibration_stride(model, 100, 7, 1000, "x", "fix") == 1
    assert q.calibration_stride(model, 1, 12, 1000, "x", "fix") == 12
    with pytest.raises(ModelFileError) as err:
        q.calibration_stride(model, budget + 1, 12, 1000, "entropy calibration", "use --calibration-method minmax")
    assert str(err.value).startswith("det.onnx: entropy calibration holds") and "--calibration-method minmax" in \
        str(err.value) and "\n" not in str(err.value)


def _calib(count: int, size: int = 32) -> DataSet:
    return DataSet({"x": np.random.default_rng(1).standard_normal((count, 3, size, size)).astype(np.float32)},
                   "cal.npz")


def test_entropy_calibration_runs_in_passes_that_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = conv_map_model(tmp_path / "m.onnx")
    per_sample = q.activation_bytes(model)
    # room for four samples' activations at a time, of twelve
    monkeypatch.setattr(q, "available_bytes", lambda: int(4.5 * per_sample / q.MEMORY_SHARE))
    inputs = (InputSpec("x", (1, 3, 32, 32), "float32"),)
    res = q.quantize_onnx(model, tmp_path / "int8.onnx", inputs, _calib(12), q.QuantConfig(method="entropy"), tmp_path)
    assert res.calibration_passes == 3 and res.quantized_nodes > 0
    assert (tmp_path / "int8.onnx").exists()


def test_a_sample_that_cannot_fit_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = conv_map_model(tmp_path / "m.onnx")
    monkeypatch.setattr(q, "available_bytes", lambda: q.activation_bytes(model))  # the share is less than that
    inputs = (InputSpec("x", (1, 3, 32, 32), "float32"),)
    with pytest.raises(ModelFileError, match=r"^m\.onnx: percentile calibration holds .* --calibration-method minmax"):
        q.quantize_onnx(model, tmp_path / "int8.onnx", inputs, _calib(4), q.QuantConfig(method="percentile"),
                        tmp_path)
    # minmax reduces in the graph: it is not bounded by the activations and still runs
    res = q.quantize_onnx(model, tmp_path / "int8.onnx", inputs, _calib(4), q.QuantConfig(method="minmax"), tmp_path)
    assert res.calibration_passes == 1


def test_sensitivity_probe_takes_the_samples_that_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = conv_map_model(tmp_path / "m.onnx")
    inputs = (InputSpec("x", (1, 3, 32, 32), "float32"),)
    qdq = q.quantize_onnx(model, tmp_path / "int8.onnx", inputs, _calib(8), q.QuantConfig(), tmp_path).path
    per_sample = 2 * q.activation_bytes(model)
    monkeypatch.setattr(q, "available_bytes", lambda: int(2.5 * per_sample / q.MEMORY_SHARE))
    taken: list[int] = []
    real_take = DataSet.take
    monkeypatch.setattr(DataSet, "take", lambda self, n: taken.append(n) or real_take(self, n))
    assert q.sensitive_nodes(model, qdq, inputs, _calib(8), tmp_path)
    assert taken == [2]
