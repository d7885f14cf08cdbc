"""Every int8 refusal names the node(s) and the reason (issue 14).

The gate refused PP-OCRv4's recognizer int8 with only "drop 13.281 > max 5.0", the mel-spectrogram front end with
"drop 50.114 > max 1.0". Each model here is built small with the trait of one of those refusals: one node whose
int8 output loses the answer, noise spread over a deep chain, a log-power front end whose every weight op feeds
its log, and a layer norm (Sqrt, Div) through TFLite.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.toolchain.test_int8_remedies import _residual_model
from tests.toolchain.test_range_paths import _log_power_model
from toolchain.blame import Diagnosis, Suspect, Trial

pytestmark = pytest.mark.host
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _convert(tmp_path: Path, model: Path, x: np.ndarray, **options: Any) -> Any:
    from toolchain.convert import ConvertOptions, convert

    half = len(x) // 2
    np.savez(tmp_path / "cal.npz", x=x[:half])
    np.savez(tmp_path / "val.npz", x=x[half:])
    options = {"formats": ("onnx-fp32", "onnx-int8"), "task": "features", **options}
    return convert(ConvertOptions.build(model=str(model), out=tmp_path / "b", calibration=tmp_path / "cal.npz",
                                        validation=tmp_path / "val.npz", latency_runs=2, **options))


def _cancelling(path: Path) -> None:
    """y = (a + b) + (−a) with a = x·W1 (~±100) and b = x·W2 (~±0.1): the sum int8 computes from its two int8
    inputs is their noise, larger than the range calibrated for the answer."""
    _residual_model(path)
    model = onnx.load(str(path))
    unmix = model.graph.node[-1]  # s − a as s + (−1)·a: onnxruntime quantizes Add and Mul, not Sub
    unmix.op_type, unmix.input[1] = "Add", "na"
    model.graph.initializer.append(numpy_helper.from_array(np.array(-1.0, np.float32), "minus"))
    model.graph.node.insert(3, helper.make_node("Mul", ["a", "minus"], ["na"], name="negate"))
    onnx.save(model, str(path))


def test_one_ruinous_node_is_named_even_without_remedies(tmp_path: Path) -> None:
    """With --no-remedies the ranking is made for the refusal only, and the line names the node and how to
    try it float."""
    _cancelling(tmp_path / "cancel.onnx")
    x = np.random.default_rng(1).standard_normal((96, 16)).astype(np.float32)
    res = _convert(tmp_path, tmp_path / "cancel.onnx", x, remedies=False)
    entry = res.report["rejected"]["model.int8.onnx"]
    assert "; noisiest node 'unmix' (Add, SQNR" in entry["reason"], entry["reason"]
    assert entry["reason"].endswith("keeping it float not tried (--no-remedies; --keep-float unmix tries it)")
    ranked = entry["diagnosis"]["ranked"]
    assert ranked[0]["node"] == "unmix" and ranked[0]["sqnr_db"] < min(r["sqnr_db"] for r in ranked[1:])
    assert entry["diagnosis"]["verdict"] == "untried"


def _deep_chain(path: Path, layers: int = 24, width: int = 16) -> None:
    """x → (MatMul, Tanh) × ``layers``: every layer adds a little int8 noise, none more than the others."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) * 1.2 / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"tanh{i}")]
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_loss_spread_over_a_deep_chain_is_said_so(tmp_path: Path) -> None:
    _deep_chain(tmp_path / "chain.onnx")
    x = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32)
    res = _convert(tmp_path, tmp_path / "chain.onnx", x, max_drop=0.0)
    entry = res.report["rejected"]["model.int8.onnx"]
    diagnosis = entry["diagnosis"]
    assert diagnosis["verdict"] == "spread", diagnosis
    assert len(diagnosis["kept_float"]) == 4 and len(diagnosis["kept_float"][-1]["nodes"]) == 8
    assert "keeping the 8 noisiest float still drops" in entry["reason"], entry["reason"]
    assert entry["reason"].endswith("the loss is spread over many nodes, not one")
    assert f"noisiest node {diagnosis['ranked'][0]['node']!r}" in entry["reason"]


def test_log_power_front_end_with_every_weight_op_on_its_paths_names_the_log(tmp_path: Path) -> None:
    """The mel-spectrogram case: the only weight op (the STFT conv) feeds the squares and the log, so keeping
    their paths float is no int8 file; the line names them and says which artifact to use."""
    _log_power_model(tmp_path / "full.onnx")
    model = onnx.load(str(tmp_path / "full.onnx"))
    head = model.graph.node[-1]  # the head conv gone: the log power is the output
    head.op_type = "Identity"
    del head.input[1:]
    del head.attribute[:]
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 8
    onnx.save(model, str(tmp_path / "front.onnx"))
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((96, 1, 256)) * 10.0 ** rng.uniform(-3, 0, (96, 1, 1))).astype(np.float32)
    res = _convert(tmp_path, tmp_path / "front.onnx", x)
    entry = res.report["rejected"]["model.int8.onnx"]
    reason = entry["reason"]
    assert "range-sensitive node(s) 're_sq' (Pow), 'im_sq' (Pow), 'log' (Log)" in reason, reason
    assert "every weight op feeds them" in reason and "model.fp32.onnx is the artifact to use" in reason
    assert entry["diagnosis"]["verdict"] == "range"
    assert {r["node"] for r in entry["diagnosis"]["range_sensitive"]} == {"re_sq", "im_sq", "log"}


def _onnx(name: str, sqnr: float) -> Suspect:
    return Suspect(name, "Relu", sqnr)


@pytest.mark.parametrize(("drops", "verdict", "says"), [
    ((12.0, 6.2, 7.0, 9.0), "recovered", "keeping 'a', 'b' float brings it to 6.2 (max 5.0)"),
    ((15.6, 13.3, 18.0, 17.2), "spread", "keeping the 8 noisiest float still drops 17.2: the loss is spread"),
    ((math.nan, 13.0, math.nan, math.nan), "spread", "keeping the 2 noisiest float still drops 13.0"),
])
def test_the_verdict_follows_what_keeping_nodes_float_recovered(drops: tuple[float, ...], verdict: str,
                                                                 says: str) -> None:
    """From a 13.3 drop (max 5.0): keeping nodes float that recover most of the excess names them; trials that
    recover little say the loss is spread; trials that made no file are not counted."""
    names = ("a", "b", "c", "d", "e", "f", "g", "h")
    tried = tuple(Trial(names[:k], d) for k, d in zip((1, 2, 4, 8), drops, strict=True))
    found = Diagnosis(suspects=tuple(_onnx(n, 10.0 + i) for i, n in enumerate(names)), trials=tried,
                      start_drop=13.3, max_drop=5.0)
    assert found.verdict() == verdict
    assert found.line().startswith("noisiest node 'a' (Relu, SQNR 10.0 dB); ") and says in found.line(), found.line()


def test_tflite_layer_norm_pieces_on_top_are_the_range_class() -> None:
    """PP-OCRv4 rec int8 TFLite: the debugger's worst tensors are layer-norm divides and square roots, and
    keeping them float left the drop where it was."""
    worst = Suspect("model_61/tf.math.divide_32/truediv;model_61/tf.math.sqrt_4/Sqrt", "truediv;Sqrt", 40.0,
                    tflite=True, onnx_node=("p2o.Div.3", "Div"))
    found = Diagnosis(suspects=(worst, Suspect("model_61/conv/Conv2D", "Conv2D", 3.0, tflite=True)),
                      trials=(Trial((worst.name,), 98.4), Trial((worst.name, "model_61/conv/Conv2D"), 98.4)),
                      start_drop=98.4, max_drop=5.0)
    line = found.line()
    assert line.startswith("worst TF tensor 'model_61/tf.math.divide_32/truediv;model_61/tf.math.sqrt_4/Sqrt' "
                           "(rmse 40.00 int8 steps, ONNX node 'p2o.Div.3' (Div)); Div, Sqrt among the worst"), line
    assert line.endswith("keeping the 2 noisiest float still drops 98.4: their inputs stay int8"), line
    assert found.verdict() == "range"


def _layer_norm(path: Path) -> Path:
    """x[1,16] → MatMul → layer norm as PP-OCR's recognizer writes it (ReduceMean, Sub, Mul, ReduceMean, Add,
    Sqrt, Div) → MatMul → y[1,4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 32)) / 4).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((32, 4)) / 4).astype(np.float32), "W2"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="first_matmul"),
             helper.make_node("ReduceMean", ["h"], ["mu"], name="mean", axes=[-1]),
             helper.make_node("Sub", ["h", "mu"], ["c"], name="centre"),
             helper.make_node("Mul", ["c", "c"], ["c2"], name="square"),
             helper.make_node("ReduceMean", ["c2"], ["var"], name="variance", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="floor"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="root"),
             helper.make_node("Div", ["c", "sd"], ["n"], name="normalize"),
             helper.make_node("MatMul", ["n", "W2"], ["y"], name="last_matmul")]
    graph = helper.make_graph(nodes, "layernorm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_refused_tflite_int8_names_the_worst_tensor_and_its_onnx_node(tmp_path: Path) -> None:
    """A refused int8 TFLite file (--max-drop 0) names the debugger's worst TF tensor and the ONNX node whose output
    holds its values in the fp32 file; int8-io, refused with int8's configuration, says the same."""
    pytest.importorskip("onnx2tf")
    model = _layer_norm(tmp_path / "ln.onnx")
    x = np.random.default_rng(1).standard_normal((48, 16)).astype(np.float32)
    res = _convert(tmp_path, model, x, max_drop=0.0, remedies=False,
                   formats=("onnx-fp32", "tflite-fp32", "tflite-int8", "tflite-int8-io"))
    names = {n.name for n in onnx.load(str(model)).graph.node}
    entry = res.report["rejected"]["model.int8.tflite"]
    ranked = entry["diagnosis"]["ranked"]
    assert ranked and entry["reason"].count("; worst TF tensor ") == 1, entry
    assert f"worst TF tensor {ranked[0]['tensor']!r} (rmse " in entry["reason"]
    assert [r["rmse_int8_steps"] for r in ranked] == sorted((r["rmse_int8_steps"] for r in ranked), reverse=True)
    matched = [r for r in ranked if "onnx_node" in r]
    assert matched and all(r["onnx_node"] in names for r in matched), ranked
    assert entry["reason"].endswith("keeping it float not tried (--no-remedies)"), entry["reason"]
    io = res.report["rejected"]["model.int8-io.tflite"]
    assert io["diagnosis"]["ranked"] == ranked and "; worst TF tensor " in io["reason"]


def test_tflite_range_class_still_credits_tries_that_recovered() -> None:
    """Sqrt/Div on top of the debugger's list, but keeping them float brought the drop most of the way down: the
    line says so rather than that their inputs stay int8."""
    worst = Suspect("m/tf.math.divide/truediv;m/tf.math.sqrt/Sqrt", "truediv;Sqrt", 9.0, tflite=True)
    found = Diagnosis(suspects=(worst,), trials=(Trial((worst.name,), 6.0),), start_drop=40.0, max_drop=5.0)
    assert found.verdict() == "range"
    assert found.line().endswith(f"keeping {worst.name!r} float brings it to 6.0 (max 5.0)"), found.line()


def test_a_failed_diagnosis_is_reported_but_our_own_errors_are_raised() -> None:
    from device.errors import ModelFileError
    from toolchain.blame import explain

    def fails() -> Diagnosis:
        raise ModelFileError("the quantization debugger failed (ValueError: bad graph)")

    entry = {"reason": "drop 9.000 > max 5.0 (…)"}
    assert explain(entry, fails) is None
    assert entry == {"reason": "drop 9.000 > max 5.0 (…)",
                     "diagnosis": {"error": "ModelFileError: the quantization debugger failed (ValueError: bad graph)"}}

    def ours() -> Diagnosis:
        raise FileNotFoundError("no such file: int8-probe.onnx")

    with pytest.raises(FileNotFoundError):
        explain({"reason": "drop"}, ours)
