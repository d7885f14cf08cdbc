"""Bad inputs to ``spinal convert``: one line naming the problem and the fix, exit 2, nothing written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.host

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Conv1d model exported with a dynamic batch and a dynamic time axis."""
    import toolchain_models as tm

    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    torch.onnx.export(tm.conv1d(), (torch.randn(1, 3, 20),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch", 2: "time"}, "y": {0: "batch"}})
    return path


def assert_one_line_error(result, *needles: str, code: int = 2) -> None:
    assert result.exit_code == code, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    text = " ".join(lines)
    assert text.startswith("error:"), text
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in text, text


def test_missing_host_extra(monkeypatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    result = run_cli("convert", "m.onnx", "-o", tmp_path / "b")
    assert_one_line_error(result, "pip install 'spinal[host]'")


def test_unreadable_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not protobuf at all \x00\xff" * 10)
    result = run_cli("convert", bad, "-o", tmp_path / "out")
    assert_one_line_error(result, "bad.onnx", "not a readable ONNX model")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".spinal-convert-*"))


def test_missing_model_and_unknown_type(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("convert", tmp_path / "nope.onnx", "-o", tmp_path / "o"), "no such ONNX file")
    odd = tmp_path / "model.xyz"
    odd.write_text("x")
    assert_one_line_error(run_cli("convert", odd, "-o", tmp_path / "o"), "unknown model type")


def test_dynamic_axis_needs_a_shape(conv_onnx: Path, tmp_path: Path) -> None:
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o")
    assert_one_line_error(result, "'x' dim 2", "--input-shape x:")


def test_calibration_wrong_name(conv_onnx: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", wrong=np.zeros((4, 3, 20), np.float32))
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20",
                     "--calibration", tmp_path / "cal.npz", "--formats", "onnx-fp32")
    assert_one_line_error(result, "cal.npz", "no array for model input 'x'", "it has wrong")


def test_calibration_wrong_shape(conv_onnx: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", x=np.zeros((4, 20, 3), np.float32))
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20",
                     "--calibration", tmp_path / "cal.npz", "--formats", "onnx-fp32")
    assert_one_line_error(result, "cal.npz", "shape [4, 20, 3]", "expected [N, 3, 20]")


def test_calibration_wrong_dtype(conv_onnx: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "cal.npy", np.zeros((4, 3, 20), np.complex64))
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20",
                     "--calibration", tmp_path / "cal.npy", "--formats", "onnx-fp32")
    assert_one_line_error(result, "cal.npy", "dtype complex64")


def test_calibration_nan(conv_onnx: Path, tmp_path: Path) -> None:
    x = np.zeros((4, 3, 20), np.float32)
    x[1, 1, 1] = np.nan
    np.save(tmp_path / "cal.npy", x)
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20",
                     "--calibration", tmp_path / "cal.npy", "--formats", "onnx-fp32")
    assert_one_line_error(result, "NaN")


def test_validation_labels_wrong(conv_onnx: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "val.npz", x=np.zeros((4, 3, 20), np.float32), labels=np.zeros(3, np.int64))
    result = run_cli("convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20",
                     "--validation", tmp_path / "val.npz", "--formats", "onnx-fp32")
    assert_one_line_error(result, "'labels' must be 4 integer class ids")


def test_bad_options(conv_onnx: Path, tmp_path: Path) -> None:
    base = ["convert", conv_onnx, "-o", tmp_path / "o", "--input-shape", "x:1,3,20"]
    assert_one_line_error(run_cli(*base, "--formats", "tflite-int4"), "unknown 'tflite-int4'")
    assert_one_line_error(run_cli(*base, "--calibration-method", "magic"), "'--calibration-method'",
                          "'magic' is not one of 'minmax', 'entropy', 'percentile'")
    assert_one_line_error(run_cli(*base, "--task", "anomaly"), "--threshold")
    assert_one_line_error(run_cli(*base, "--input-shape", "1,a,3"), "--input-shape")
    assert_one_line_error(run_cli(*base, "--norm-mean", "1,2", "--norm-std", "1"), "--norm-std")


def test_existing_output_needs_force(conv_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("convert", conv_onnx, "-o", out, "--input-shape", "x:1,3,20")
    assert_one_line_error(result, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_onnx_with_external_data_and_if_node(tmp_path: Path) -> None:
    """External-data weights are inlined; an If node converts (onnx2tf) or is named when it cannot."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    then_g = helper.make_graph([helper.make_node("Relu", ["h"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["h"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
        helper.make_node("Greater", ["s", "zero"], ["c0"], name="gt"),
        helper.make_node("Squeeze", ["c0"], ["c"], name="sq"),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[w, numpy_helper.from_array(np.zeros((1,), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = tmp_path / "ifnet.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ifnet.data",
              size_threshold=0)
    assert (tmp_path / "ifnet.data").exists()
    result = run_cli("convert", path, "-o", tmp_path / "b", "--formats", "onnx-fp32,tflite-fp32", "--task",
                     "regression", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    report = json.loads(result.stdout)
    assert "model.fp32.onnx" in report["artifacts"]
    assert any("external-data" in n for n in report["notes"])
    if "model.fp32.tflite" in report["failed"]:
        assert "branch" in report["failed"]["model.fp32.tflite"]["reason"]
    else:
        assert report["artifacts"]["model.fp32.tflite"]["cosine"] > 0.9999


def test_unsupported_operator_is_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="my_fancy", domain="com.acme")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)],
                              ir_version=9)
    onnx.save(model, str(tmp_path / "fancy.onnx"))
    result = run_cli("convert", tmp_path / "fancy.onnx", "-o", tmp_path / "b")
    assert_one_line_error(result, "node my_fancy (com.acme:FancyOp)")
    assert not (tmp_path / "b").exists()


def test_sklearn_asked_for_tflite_only_is_bad_input(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), tmp_path / "lr.joblib")
    result = run_cli("convert", tmp_path / "lr.joblib", "-o", tmp_path / "b", "--formats", "tflite-fp32")
    assert_one_line_error(result, "no artifact could be made", "TFLite")


def test_dynamic_axes_fixed_from_calibration_data(conv_onnx: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).standard_normal((6, 3, 20)).astype(np.float32))
    out = tmp_path / "b"
    out.mkdir()  # an existing bundle path is replaced with --force
    result = run_cli("convert", conv_onnx, "-o", out, "--calibration", tmp_path / "cal.npz",
                     "--formats", "onnx-fp32,onnx-int8", "--force", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == [1, 3, 20]
    assert any("time = 20" in n for n in manifest["notes"])


@pytest.fixture(scope="module")
def matmul_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x[1,4] @ W[4,3], saved by the onnx package with its default (newest) IR version, unnamed node."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("mm") / "mm.onnx"
    onnx.save(model, str(path))
    return path


def test_newest_ir_version_is_lowered(matmul_onnx: Path, tmp_path: Path) -> None:
    """onnx 1.19 writes IR 12, which onnxruntime 1.23 refused ('Unsupported model IR version: 12')."""
    assert onnx.load(str(matmul_onnx)).ir_version > 10
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32))
    result = run_cli("convert", matmul_onnx, "-o", tmp_path / "b", "--calibration", tmp_path / "cal.npz",
                     "--formats", "onnx-fp32,onnx-int8")
    assert result.exit_code == 0, result.stderr
    assert onnx.load(str(tmp_path / "b" / "model.fp32.onnx")).ir_version == 8  # what opset 17 needs


def test_data_and_option_mismatches(matmul_onnx: Path, tmp_path: Path) -> None:
    """Each of these converted (or died in a traceback) before; the device would have refused the bundle."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x)
    base = ["convert", matmul_onnx, "-o", tmp_path / "o", "--calibration", tmp_path / "cal.npz",
            "--formats", "onnx-fp32,onnx-int8"]
    np.savez(tmp_path / "t5.npz", x=x, targets=np.zeros((12, 5)))
    assert_one_line_error(run_cli(*base, "--validation", tmp_path / "t5.npz"), "t5.npz", "'targets' has 5",
                          "gives 3")
    np.savez(tmp_path / "tnan.npz", x=x, targets=np.full((12, 3), np.nan))
    assert_one_line_error(run_cli(*base, "--validation", tmp_path / "tnan.npz"), "tnan.npz", "NaN")
    np.savez(tmp_path / "both.npz", x=x, targets=np.zeros((12, 3)), labels=np.zeros(12, np.int64))
    assert_one_line_error(run_cli(*base, "--validation", tmp_path / "both.npz"), "both 'labels' and 'targets'")
    assert_one_line_error(run_cli(*base, "--task", "regression", "--targets", "a,b"), "--targets gives 2 names")
    assert_one_line_error(run_cli(*base, "--task", "regression", "--units", "a,b"), "--units gives 2")
    assert_one_line_error(run_cli(*base, "--task", "anomaly", "--threshold", "1"), "one score")
    assert_one_line_error(run_cli(*base, "--threshold", "nan", "--task", "anomaly"), "--threshold")
    assert_one_line_error(run_cli(*base, "--max-drop", "nan"), "--max-drop")
    assert_one_line_error(run_cli(*base, "--window", "0"), "--window: must be >= 1")
    assert_one_line_error(run_cli(*base, "--hop", "0"), "--hop: must be >= 1")
    assert_one_line_error(run_cli(*base, "--sample-rate", "-5"), "--sample-rate")
    assert_one_line_error(run_cli(*base, "--calibration-samples", "0"), "--calibration-samples")
    assert_one_line_error(run_cli(*base, "--channels", "a,b,c"), "--channels names 3")
    assert_one_line_error(run_cli(*base, "--channel-units", "m"), "--channel-units needs --channels")
    assert_one_line_error(run_cli(*base, "--channels", "a,b,c,d", "--channel-units", "m,s"), "2 units for 4")
    assert_one_line_error(run_cli(*base, "--keep-float", "nonode"), "--keep-float", "'nonode'")
    assert_one_line_error(run_cli(*base, "--input-shape", "q:1,4"), "no input 'q'")
    assert_one_line_error(run_cli(*base, "--name", "a/b"), "--name 'a/b'")
    assert_one_line_error(run_cli(*base, "--layout", "nc"), "--layout 'nc'")
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".spinal-convert-*"))


def test_corrupt_pt2_is_one_line_without_torch_logging_a_traceback(tmp_path: Path) -> None:
    """torch.export.load logs a whole traceback (logging, stderr) before raising: a subprocess sees it all."""
    import subprocess
    import sys

    bad = tmp_path / "model.pt2"
    bad.write_bytes(b"\x00not a zip\xff" * 40)
    result = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "convert", str(bad), "-o",
                             str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "model.pt2" in lines[0], result.stderr


def test_library_checks_activation_before_converting(matmul_onnx: Path, tmp_path: Path) -> None:
    """Python callers (models/build.py) get the same one-line refusal as the CLI, before any work."""
    from device.errors import BadInput
    from toolchain.convert import ConvertOptions, convert

    with pytest.raises(BadInput, match="--activation: must be one of logits, probabilities \\(got 'softmax'\\)"):
        convert(ConvertOptions.build(model=str(matmul_onnx), out=tmp_path / "o", activation="softmax"))
    assert not list(tmp_path.iterdir())
