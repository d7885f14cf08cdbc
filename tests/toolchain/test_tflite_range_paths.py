"""The range-path remedy for int8 TFLite: the paths into Log/Sqrt/Pow/... kept float through the TF denylist.

silero VAD's int8 TFLite was refused (drop 6.8, "spread over many nodes") while its int8 ONNX shipped with the
paths into its log kept float: the TFLite search never tried them. The ONNX nodes on the paths are matched to TF
tensors by value in the fp32 TFLite file, with the copies of the graph input they read (TensorFlow quantizes
every input on entry, onnxruntime leaves one float when only float nodes read it), and denylisted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.toolchain.test_range_paths import FRONT_END, _log_power_model
from toolchain.blame import Diagnosis, Suspect, Trial

pytestmark = pytest.mark.host
RANGE_TRY = "paths into range-sensitive ops float"


def test_the_tensors_to_keep_float_are_the_paths_and_the_input_they_read(tmp_path: Path) -> None:
    import onnx

    from toolchain.range_paths import range_path_tensors

    _log_power_model(tmp_path / "lp.onnx")
    model = onnx.load(str(tmp_path / "lp.onnx"))
    outputs = {n.name: n.output[0] for n in model.graph.node}
    assert range_path_tensors(model, FRONT_END) == (*(outputs[n] for n in FRONT_END), "x")
    assert "y" not in range_path_tensors(model, FRONT_END)  # the head conv after the log stays int8


def test_log_power_front_end_int8_tflite_ships_with_its_paths_float(tmp_path: Path) -> None:
    """Per-channel and per-tensor int8 lose the quiet inputs (refused); with the paths and the input's copies kept
    float the file passes, and in it the log computes in float while the head conv stays int8."""
    pytest.importorskip("onnx2tf")
    from tests.toolchain.test_blame import _convert
    from toolchain.locate import tflite_input_names

    _log_power_model(tmp_path / "lp.onnx")
    rng = np.random.default_rng(1)
    level = 10.0 ** rng.uniform(-3, 0, (96, 1, 1))
    x = (rng.standard_normal((96, 1, 256)) * level).astype(np.float32)
    res = _convert(tmp_path, tmp_path / "lp.onnx", x, max_drop=5.0,
                   formats=("onnx-fp32", "tflite-fp32", "tflite-int8"))
    entry = res.report["artifacts"]["model.int8.tflite"]
    assert RANGE_TRY in entry["quantization"] and entry["drop"] <= 5.0, entry
    earlier = [a["drop"] for a in entry["attempts"] if RANGE_TRY not in a["config"]]
    assert len(earlier) == 2 and min(earlier) > 5.0, entry["attempts"]  # refused without the remedy
    assert any(n.startswith("model.int8.tflite: kept float, the TF tensors on the paths into range-sensitive")
               for n in res.report["notes"]), res.report["notes"]
    dtypes = _dtypes(tmp_path / "b" / "model.int8.tflite")
    assert [d for n, d in dtypes.items() if n.endswith("/Log")] == ["float32"], dtypes
    assert "int8" in {d for n, d in dtypes.items() if "conv1d" in n and n not in tflite_input_names(
        tmp_path / "b" / "model.int8.tflite")}, dtypes


def _dtypes(path: Path) -> dict[str, str]:
    from device.modelfile import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    return {str(d["name"]): np.dtype(d["dtype"]).name for d in cls(model_path=str(path)).get_tensor_details()}


def test_a_refused_range_try_is_said_so() -> None:
    """Sqrt/Div on top, the 4 noisiest and the range paths kept float both refused: the line reports both drops
    rather than that the inputs stay int8."""
    worst = Suspect("m/tf.math.divide/truediv;m/tf.math.sqrt/Sqrt", "truediv;Sqrt", 9.0, tflite=True)
    found = Diagnosis(suspects=(worst,), trials=(Trial((worst.name,), 95.0),), start_drop=98.0, max_drop=5.0,
                      range_trial=Trial(("a", "b", "c"), 97.0))
    assert found.verdict() == "range"
    line = found.line()
    assert line.endswith("keeping the 1 noisiest float still drops 95.0, keeping the paths into range-sensitive ops "
                         "float (3 TF tensors) drops 97.0: the loss is not on those paths alone"), line
    assert "stay int8" not in line
    assert found.details()["range_paths_float"] == {"tensors": ["a", "b", "c"], "drop": 97.0}
    spread = Diagnosis(suspects=(Suspect("m/conv/Relu", "Relu", 6.0, tflite=True),), trials=(Trial(("m/conv/Relu",),
                       6.8),), start_drop=6.8, max_drop=3.0, range_trial=Trial(("a",), 5.0))
    assert spread.line().endswith("(1 TF tensors) drops 5.0: the loss is spread over many nodes, not one")
