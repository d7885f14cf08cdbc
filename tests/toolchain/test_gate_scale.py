"""The accuracy gate judges what the task needs: a single sigmoid score whose int8 version answers about
0.5 where the original answers about 0.92 is refused, although its cosine against fp32 is ~1.

The model is a logistic detector ``sigmoid(x @ w + b)``; its calibration data hold two outlier windows
(as a real recording with a glitch does), so minmax int8 quantization rounds every ordinary
pre-activation to zero and the int8 score sits at sigmoid(0) = 0.5 on every sample: scaled, not noisy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.bundle import open_bundle
from device.runtime import RuntimePolicy, load_model  # type: ignore[attr-defined]
from toolchain.convert import ConvertOptions, convert
from toolchain.validate import fidelity, fidelity_drop

FEATURES = 16


def score_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((FEATURES, 1), 0.05, np.float32), "w")
    b = numpy_helper.from_array(np.array([2.5], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["score"])],
        "detector", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("gate_scale")
    rng = np.random.default_rng(3)
    calib = rng.standard_normal((64, FEATURES)).astype(np.float32)
    calib[5], calib[40] = 1000.0, -1000.0  # two glitches widen every activation range
    np.savez(work / "calib.npz", x=calib)
    np.savez(work / "val.npz", x=rng.standard_normal((200, FEATURES)).astype(np.float32))
    return {"model": score_model(work / "detector.onnx"), "calib": work / "calib.npz", "val": work / "val.npz",
            "work": work}


def test_a_halved_score_is_not_shipped_without_remedies(data: dict[str, Path]) -> None:
    res = convert(ConvertOptions.build(model=str(data["model"]), out=data["work"] / "plain.spinal",
                                       formats=("onnx-fp32", "onnx-int8"), calibration=data["calib"],
                                       validation=data["val"], remedies=False, latency_runs=3))
    assert [a.path for a in res.manifest.artifacts] == ["model.fp32.onnx"]
    rejected = res.report["rejected"]["model.int8.onnx"]
    # The trait that fooled the old gate: a cosine of ~1 against fp32, yet every score is far off.
    assert rejected["cosine"] > 0.999
    assert rejected["rel_rms"] > 0.3
    assert abs(rejected["scale"] - 1.0) > 0.3
    assert rejected["drop"] > 1.0


def test_a_shipped_int8_score_answers_like_the_original(data: dict[str, Path]) -> None:
    res = convert(ConvertOptions.build(model=str(data["model"]), out=data["work"] / "remedied.spinal",
                                       formats=("onnx-fp32", "onnx-int8"), calibration=data["calib"],
                                       validation=data["val"], latency_runs=3))
    x = np.load(data["val"])["x"]
    shipped = [a.path for a in res.manifest.artifacts]
    with open_bundle(res.out) as bundle:
        outs = {}
        for path in shipped:
            with load_model(bundle, RuntimePolicy(runtime="onnxruntime", artifact=path, autotune=False)) as model:
                outs[path] = np.stack([model.run({"x": row[None]})["score"] for row in x])
    if "model.int8.onnx" in shipped:  # remedied: then it must truly answer like fp32
        fid = fidelity({"score": outs["model.int8.onnx"]}, {"score": outs["model.fp32.onnx"]})
        assert fid["rel_rms"] < 0.05, fid
    else:
        assert "model.int8.onnx" in res.report["rejected"]


def test_threshold_decisions_count_in_the_gate() -> None:
    ref = {"score": np.linspace(0.6, 0.99, 50).reshape(50, 1, 1)}
    flipped = {"score": ref["score"] * 0.9}  # 10% lower: most scores cross 0.8 downwards
    fid = fidelity(flipped, ref)
    from device.runtime.parity import DecisionRule
    from toolchain.validate import agreement

    fid["agreement"] = agreement(flipped, ref, DecisionRule("threshold", "score", threshold=0.8))
    assert fid["agreement"] < 80
    assert fidelity_drop(fid) > 20
    assert fidelity_drop(fidelity(ref, ref)) == 0.0


def test_task_score_takes_the_output_that_holds_one_value(tmp_path: Path) -> None:
    """A VAD returns its recurrent state [2, 1, 8] before its one score; `--task score` means the score."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((FEATURES, 16), 0.1, np.float32), "w")
    v = numpy_helper.from_array(np.full((16, 1), 0.05, np.float32), "v")
    shape = numpy_helper.from_array(np.array([2, 1, 8], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["state"]),
         helper.make_node("MatMul", ["h", "v"], ["z"]), helper.make_node("Sigmoid", ["z"], ["prob"])],
        "vad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FEATURES])],
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 8]),
         helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1])], initializer=[w, v, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "vad.onnx")
    res = convert(ConvertOptions.build(model=str(tmp_path / "vad.onnx"), out=tmp_path / "vad.spinal", task="score",
                                       formats=("onnx-fp32",), latency_runs=3))
    assert res.manifest.task.kind == "score" and res.manifest.task.output == "prob"
