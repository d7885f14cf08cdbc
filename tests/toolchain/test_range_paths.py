"""The int8 remedy for range-sensitive ops (issue 14): the paths into Log/Sqrt/Pow/... kept float.

silero VAD's log-power front end (an STFT convolution, slices, squares, a sum, a log) lost 2 of 44 detections
int8 with every remedy tried before; its power spectrum spans decades and one int8 scale rounds the quiet bins
away, which the log then brings back. The model here has the same trait, small: an STFT convolution, real and
imaginary slices, squares, their sum and a log, then a 1×1 head; the inputs are noise at levels from 1e-3 to 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from toolchain.quantize import RANGE_LABEL, QuantConfig

pytestmark = pytest.mark.host
FRONT_END = ("stft", "real", "imag", "re_sq", "im_sq", "power", "floor", "log")


def _log_power_model(path: Path) -> None:
    """x [1, 1, 256] → STFT conv (8 bins, cos and −sin) → |·|² → log(· + 1e-9) → 1×1 conv to 4 features."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, hop, bins = 64, 32, 8
    t, k = np.arange(n), np.arange(bins)[:, None]
    basis = np.concatenate([np.cos(2 * np.pi * k * t / n), -np.sin(2 * np.pi * k * t / n)])[:, None, :]
    consts = {"basis": basis, "s0": np.array([0]), "s1": np.array([bins]), "s2": np.array([2 * bins]),
              "ax": np.array([1]), "two": np.array(2.0), "eps": np.array(1e-9),
              "head_w": np.random.default_rng(0).standard_normal((4, bins, 1)) * 0.3}
    inits = [numpy_helper.from_array(v.astype(np.int64 if v.dtype.kind == "i" else np.float32), name)
             for name, v in consts.items()]
    nodes = [helper.make_node("Conv", ["x", "basis"], ["spec"], name="stft", strides=[hop]),
             helper.make_node("Slice", ["spec", "s0", "s1", "ax"], ["re"], name="real"),
             helper.make_node("Slice", ["spec", "s1", "s2", "ax"], ["im"], name="imag"),
             helper.make_node("Pow", ["re", "two"], ["re2"], name="re_sq"),
             helper.make_node("Pow", ["im", "two"], ["im2"], name="im_sq"),
             helper.make_node("Add", ["re2", "im2"], ["pw"], name="power"),
             helper.make_node("Add", ["pw", "eps"], ["pe"], name="floor"),
             helper.make_node("Log", ["pe"], ["lp"], name="log"),
             helper.make_node("Conv", ["lp", "head_w"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "logpower", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 7])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="session")
def log_power(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The model and its conversion to fp32 + int8 ONNX with the remedies (converted once per session)."""
    from toolchain.convert import ConvertOptions, convert

    tmp = tmp_path_factory.mktemp("range_paths")
    model = tmp / "log_power.onnx"
    _log_power_model(model)
    rng = np.random.default_rng(1)
    level = 10.0 ** rng.uniform(-3, 0, (96, 1, 1))
    data = (rng.standard_normal((96, 1, 256)) * level).astype(np.float32)
    np.savez(tmp / "cal.npz", x=data[:48])
    np.savez(tmp / "val.npz", x=data[48:])
    res = convert(ConvertOptions.build(model=str(model), out=tmp / "b", formats=("onnx-fp32", "onnx-int8"),
                                       calibration=tmp / "cal.npz", validation=tmp / "val.npz", task="features"))
    return model, res


def test_paths_run_from_the_weight_op_to_the_log(log_power: tuple[Path, Any]) -> None:
    import onnx

    from toolchain.range_paths import range_sensitive_paths

    assert range_sensitive_paths(onnx.load(str(log_power[0]))) == FRONT_END  # the head conv stays int8


def test_div_counts_only_by_a_computed_divisor() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from toolchain.range_paths import range_sensitive_paths

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    six = numpy_helper.from_array(np.array(6.0, np.float32), "six")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
             helper.make_node("Div", ["a", "six"], ["b"], name="by_const"),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Div", ["b", "r"], ["q"], name="by_tensor"),
             helper.make_node("MatMul", ["q", "w"], ["y"], name="head")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "div", vi[:1], vi[1:], [w, six]))
    assert range_sensitive_paths(model) == ("mm", "by_const", "relu", "by_tensor")
    del model.graph.node[3:]  # without the Div by a tensor, a Div by a constant (hard-swish's /6) is no reason
    assert range_sensitive_paths(model) == ()


def test_no_paths_when_they_hold_every_weight_op(log_power: tuple[Path, Any]) -> None:
    import onnx

    from toolchain.range_paths import range_sensitive_paths

    model = onnx.load(str(log_power[0]))
    model.graph.node[-1].op_type = "Identity"  # the head conv gone: only the STFT conv, on the path, has weights
    del model.graph.node[-1].input[1:]
    del model.graph.node[-1].attribute[:]
    assert range_sensitive_paths(model) == ()


def test_log_power_front_end_ships_with_its_paths_float(log_power: tuple[Path, Any]) -> None:
    entry = log_power[1].report["artifacts"]["model.int8.onnx"]
    assert RANGE_LABEL in entry["quantization"]
    assert entry["drop"] <= 1.0
    earlier = [t["drop"] for t in entry["attempts"] if RANGE_LABEL not in t["config"]]
    assert len(earlier) == 7 and min(earlier) > 10.0  # every other remedy loses the quiet inputs
    assert any("range-sensitive" in n and "stft" in n and "head" not in n for n in log_power[1].report["notes"])


def test_range_remedies_come_last_one_per_method() -> None:
    from toolchain.convert_artifacts import onnx_remedies

    configs = onnx_remedies(QuantConfig(), ("stft", "log"))
    assert [c.method for c in configs[-3:]] == ["minmax", "entropy", "percentile"]
    assert all(c.range_float == ("stft", "log") and not c.weight_ops_only for c in configs[-3:])
    assert all(not c.range_float for c in configs[:-3])
    assert len({c.label() for c in configs}) == len(configs)  # the sensitive search finds its start by label
    assert onnx_remedies(QuantConfig()) == configs[:-3]
