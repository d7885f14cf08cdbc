"""An int8 artifact larger than its float file is reported as a size regression (issue 14: an int8 ONNX with its
GRU kept in float, an int8 TFLite 12x larger, both shipped silently as "int8")."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.sizes import size_regressions, speed_regressions

pytestmark = pytest.mark.host


def _entry(fmt: str, precision: str, size: int) -> dict:
    return {"format": fmt, "precision": precision, "bytes": size}


def test_only_int8_files_not_smaller_than_their_float_file_are_marked() -> None:
    arts = {"model.fp32.onnx": _entry("onnx", "fp32", 1000), "model.int8.onnx": _entry("onnx", "int8", 1300),
            "model.fp32.tflite": _entry("tflite", "fp32", 2000), "model.fp16.tflite": _entry("tflite", "fp16", 2500),
            "model.int8.tflite": _entry("tflite", "int8", 600),
            "model.int8-io.tflite": _entry("tflite", "int8-io", 2000)}
    notes = size_regressions(arts)
    assert arts["model.int8.onnx"]["size_regression"] == 1.3
    assert arts["model.int8-io.tflite"]["size_regression"] == 1.0
    assert "size_regression" not in arts["model.int8.tflite"] and "size_regression" not in arts["model.fp16.tflite"]
    assert len(notes) == 2 and notes[0].startswith("size regression: model.int8.onnx is 1.30x the size of "
                                                   "model.fp32.onnx (1,300 vs 1,000 bytes")
    assert "deploy model.fp32.onnx" in notes[0]


def test_a_tflite_int8_without_fp32_tflite_is_compared_with_the_fp32_onnx() -> None:
    arts = {"model.fp32.onnx": _entry("onnx", "fp32", 100), "model.int8.tflite": _entry("tflite", "int8", 150)}
    assert "1.50x the size of model.fp32.onnx" in size_regressions(arts)[0]
    assert arts["model.int8.tflite"]["size_regression"] == 1.5


def test_int8_files_measurably_slower_than_their_float_file_are_marked() -> None:
    arts = {"model.fp32.onnx": {"format": "onnx", "precision": "fp32", "latency_us": 250.0},
            "model.int8.onnx": {"format": "onnx", "precision": "int8", "latency_us": 396.0},
            "model.fp32.tflite": {"format": "tflite", "precision": "fp32", "latency_us": 100.0},
            "model.int8.tflite": {"format": "tflite", "precision": "int8", "latency_us": 105.0},  # within spread
            "model.int8-io.tflite": {"format": "tflite", "precision": "int8-io", "latency_us": 60.0},
            "model.fp16.tflite": {"format": "tflite", "precision": "fp16", "latency_us": 400.0}}  # not int8
    notes = speed_regressions(arts)
    assert arts["model.int8.onnx"]["speed_regression"] == 1.58
    assert all("speed_regression" not in arts[n] for n in arts if n != "model.int8.onnx")
    assert notes == ["speed regression: model.int8.onnx ran 1.58x slower than model.fp32.onnx on this host (396 vs "
                     "250 µs); measure on the device (`spinal bench`); `spinal run` with runtime auto keeps the "
                     "faster there"]


def test_convert_reports_a_tiny_model_whose_int8_file_grew(tmp_path: Path) -> None:
    """A model of a few hundred weight bytes: its QDQ int8 ONNX carries more scales and nodes than it saves."""
    pytest.importorskip("onnx")
    from tests.toolchain.test_field_classes import calibration, mlp_onnx
    from toolchain.convert import ConvertOptions, convert

    model = mlp_onnx(tmp_path / "mlp.onnx")
    calibration(tmp_path / "cal.npz", "x", (6,))
    res = convert(ConvertOptions.build(model=str(model), out=tmp_path / "b", calibration=tmp_path / "cal.npz",
                                 max_drop=100.0, formats=("onnx-fp32", "onnx-int8")))
    arts = res.report["artifacts"]
    assert arts["model.int8.onnx"]["bytes"] >= arts["model.fp32.onnx"]["bytes"]
    ratio = arts["model.int8.onnx"]["size_regression"]
    assert ratio == pytest.approx(arts["model.int8.onnx"]["bytes"] / arts["model.fp32.onnx"]["bytes"], abs=1e-3)
    assert any(n.startswith("size regression: model.int8.onnx") for n in res.report["notes"])
