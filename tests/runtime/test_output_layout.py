"""A float output whose artifact layout differs from the logical one is transposed back (no quantization)."""

from __future__ import annotations

import numpy as np
import pytest

from device.bundle import file_digest, open_bundle, write_manifest
from device.manifest import FORMAT_VERSION, Artifact, ArtifactTensor, Manifest, Task, TensorSpec
from device.runtime import RuntimePolicy, load_model


def test_transposed_float_output_comes_back_in_the_logical_layout(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # The file emits y in NTC; the logical output is NCT, so the runner must transpose it back.
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    sha, size = file_digest(tmp_path / "model.onnx")
    write_manifest(tmp_path, Manifest(
        format_version=FORMAT_VERSION, name="transpose", created="2026-11-23T00:00:00Z",
        inputs=(TensorSpec("x", (1, 2, 3), layout="NCT"),),
        outputs=(TensorSpec("y", (1, 2, 3), layout="NCT"),),
        task=Task(kind="regression", output="y"),
        artifacts=(Artifact(path="model.onnx", format="onnx", precision="fp32", sha256=sha, bytes=size,
                            inputs=(ArtifactTensor("x", (1, 2, 3), "float32", "NCT"),),
                            outputs=(ArtifactTensor("y", (1, 3, 2), "float32", "NTC"),)),),
    ))
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    with open_bundle(tmp_path) as bundle:
        model_ = load_model(bundle, RuntimePolicy(runtime="onnxruntime"))
        np.testing.assert_array_equal(model_.run({"x": x})["y"], x)
