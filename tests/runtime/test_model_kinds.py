"""The kinds of files third-party models come in: sparse, fp16, int8 with resource variables and CALL_ONCE,
dynamic input shapes that need a resize before allocation, ONNX with LSTM and If."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from device.bundle import file_digest, write_manifest
from device.errors import BundleError
from device.manifest import FORMAT_VERSION, Artifact, ArtifactTensor, Manifest, Task, TensorSpec
from device.runtime import InputError, RuntimePolicy, load_model
from tests.runtime.conftest import need


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("tensorflow", "onnx", "onnxruntime", "ai_edge_litert")
    return tmp_path_factory.mktemp("zoo")


def test_sparse_tflite(zoo_dir: Path) -> None:
    from tests.runtime import zoo

    path, keras = zoo.sparse_tflite(zoo_dir / "sparse.tflite")
    model = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    (out,) = model.run({model.inputs[0].name: x}).values()
    np.testing.assert_allclose(out, keras(x).numpy(), atol=1e-4)


def test_dynamic_shapes_are_resized_before_allocation(zoo_dir: Path) -> None:
    from tests.runtime import zoo

    path, keras = zoo.dynamic_tflite(zoo_dir / "dynamic.tflite")
    model = load_model(path)
    (inp,) = model.inputs
    assert inp.shape == (None, None, 6)
    rng = np.random.default_rng(1)
    for shape in [(1, 20, 6), (2, 40, 6), (1, 20, 6)]:
        x = rng.standard_normal(shape).astype(np.float32)
        (out,) = model.run({inp.name: x}).values()
        assert out.shape == (shape[0], 3)
        np.testing.assert_allclose(out, keras(x).numpy(), atol=1e-4)
    with pytest.raises(InputError, match=r"expected shape \[\?, \?, 6\]"):
        model.run({inp.name: np.zeros((1, 20, 5), np.float32)})

    # In a bundle the logical shape is concrete: the runner resizes the file's [-1, -1, 6] once, at load.
    root = zoo_dir / "dyn_bundle"
    root.mkdir()
    (root / "model.tflite").write_bytes(path.read_bytes())
    sha, size = file_digest(root / "model.tflite")
    manifest = Manifest(
        format_version=FORMAT_VERSION, name="dyn", created="2026-11-23T00:00:00Z",
        inputs=(TensorSpec("imu", (1, 50, 6), layout="NTC"),), outputs=(TensorSpec("y", (1, 3)),),
        task=Task(kind="regression", output="y", targets=("a", "b", "c")),
        artifacts=(Artifact("model.tflite", "tflite", "fp32", sha, size,
                            inputs=(ArtifactTensor(inp.name, (1, 50, 6), "float32", layout="NTC"),)),),
    )
    write_manifest(root, manifest)
    bundled = load_model(root, RuntimePolicy(runtime="litert"))
    assert bundled.session._shapes == [(1, 50, 6)]
    x = rng.standard_normal((1, 50, 6)).astype(np.float32)
    np.testing.assert_allclose(bundled.run({"imu": x})["y"], keras(x).numpy(), atol=1e-4)
    bad = dataclasses.replace(manifest, inputs=(TensorSpec("imu", (1, 50, 7), layout="NTC"),))
    write_manifest(root, bad)
    with pytest.raises(BundleError, match=r"needs \[1, 50, 7\]"):
        load_model(root, RuntimePolicy(runtime="litert"))


def test_int8_with_resource_variables_and_call_once(zoo_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from tests.runtime import zoo

    path = zoo.stateful_int8_tflite(zoo_dir / "stateful.tflite")
    raw = Interpreter(model_path=str(path))
    ops = {op["op_name"] for op in raw._get_ops_details()}
    assert {"CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= ops
    raw.allocate_tensors()
    model = load_model(path)
    assert model.info.precision == "int8"
    rng = np.random.default_rng(5)
    for _ in range(4):  # the state carries over between calls, in both
        x = rng.standard_normal((1, 8)).astype(np.float32)
        raw.set_tensor(raw.get_input_details()[0]["index"], x)
        raw.invoke()
        want = raw.get_tensor(raw.get_output_details()[0]["index"])
        (got,) = model.run({model.inputs[0].name: x}).values()
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_onnx_with_lstm_and_if(zoo_dir: Path) -> None:
    from tests.runtime import zoo

    path, weights = zoo.lstm_if_onnx(zoo_dir / "lstm_if.onnx")
    model = load_model(path)
    assert model.info.runtime == "onnxruntime" and model.inputs[0].shape == (10, 1, 4)
    rng = np.random.default_rng(3)
    for sign in (1, -1):  # both branches of the If
        x = (sign * np.abs(rng.standard_normal((10, 1, 4)))).astype(np.float32)
        np.testing.assert_allclose(model.run({"x": x})["y"], zoo.lstm_if_reference(x, weights), atol=1e-5)


def test_fp16_plain_file_is_recognised(bundle_dir: Path) -> None:
    model = load_model(bundle_dir / "model_fp16.tflite")
    assert model.info.precision == "fp16"


def test_several_inputs_and_outputs_are_matched_by_name(zoo_dir: Path) -> None:
    """Two inputs, two outputs; the manifest lists them in another order than the file, and one is NCT."""
    import onnx
    from onnx import TensorProto, helper

    path = zoo_dir / "two_io.onnx"
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b_t"], ["sum"]), helper.make_node("Mul", ["a", "b_t"], ["prod"]),
         helper.make_node("Transpose", ["b"], ["b_t"], perm=[0, 2, 1])],
        "two_io",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 4])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 4, 3]),
         helper.make_tensor_value_info("prod", TensorProto.FLOAT, [1, 4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    root = zoo_dir / "two_io"
    root.mkdir()
    (root / "m.onnx").write_bytes(path.read_bytes())
    sha, size = file_digest(root / "m.onnx")
    manifest = Manifest(
        format_version=FORMAT_VERSION, name="two-io", created="2026-11-23T00:00:00Z",
        inputs=(TensorSpec("gyro", (1, 4, 3), layout="NTC"), TensorSpec("accel", (1, 4, 3), layout="NTC")),
        outputs=(TensorSpec("product", (1, 4, 3)), TensorSpec("total", (1, 4, 3))),
        task=Task(kind="regression", output="total"),
        artifacts=(Artifact("m.onnx", "onnx", "fp32", sha, size,
                            inputs=(ArtifactTensor("b", (1, 3, 4), "float32", layout="NCT"),
                                    ArtifactTensor("a", (1, 4, 3), "float32", layout="NTC")),
                            outputs=(ArtifactTensor("prod", (1, 4, 3), "float32"),
                                     ArtifactTensor("sum", (1, 4, 3), "float32"))),),
    )
    write_manifest(root, manifest)
    bundled = load_model(root)
    rng = np.random.default_rng(0)
    gyro, accel = rng.standard_normal((2, 1, 4, 3)).astype(np.float32)
    out = bundled.run({"accel": accel, "gyro": gyro})
    assert set(out) == {"product", "total"}
    np.testing.assert_allclose(out["total"], gyro + accel, rtol=1e-6)
    np.testing.assert_allclose(out["product"], gyro * accel, rtol=1e-6)
    with pytest.raises(InputError, match="missing input 'gyro'"):
        bundled.run({"accel": accel})
    plain = load_model(path)
    assert [t.name for t in plain.inputs] == ["a", "b"]
    res = plain.run({"a": accel, "b": gyro.transpose(0, 2, 1)})
    np.testing.assert_allclose(res["sum"], accel + gyro, rtol=1e-6)
