"""A CSV of sensor readings becomes model inputs exactly as the device pipeline makes them from the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.manifest import Normalization
from device.pipeline import model_windows
from tests.conftest import DATA
from toolchain.calibration import CsvOptions, InputSpec, read_dataset
from toolchain.convert import ConvertOptions, convert

CHANNELS = ("accel_x", "accel_y", "accel_z")


def _csv(path: Path, rows: int = 40) -> np.ndarray:
    series = np.random.default_rng(3).normal([0.5, -1.0, 9.81], [0.2, 0.4, 1.5], size=(rows, 3)).astype(np.float32)
    lines = [",".join(CHANNELS)] + [",".join(f"{v:.6f}" for v in row) for row in series]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return np.array([[float(f"{v:.6f}") for v in row] for row in series], dtype=np.float32)


@pytest.mark.parametrize("layout", ["NTC", None])
def test_csv_calibration_windows_are_the_device_pipelines(tmp_path: Path, layout: str | None) -> None:
    series = _csv(tmp_path / "cal.csv")
    res = convert(ConvertOptions.build(
        model=str(DATA / "tiny.onnx"), out=tmp_path / "b", formats=("onnx-fp32",), calibration=tmp_path / "cal.csv",
        channels=CHANNELS, window=8, hop=4, layout=layout, norm_mean=(0.5, -1.0, 9.81), norm_std=(0.2, 0.4, 1.5),
        golden_count=6, latency_runs=2))
    spec = res.manifest.inputs[0]
    assert spec.normalization == Normalization(mean=(0.5, -1.0, 9.81), std=(0.2, 0.4, 1.5))
    device_inputs = model_windows(series, spec)  # what the device feeds the model for the same readings
    assert len(device_inputs) == 9
    with np.load(res.out / "golden.npz") as golden:  # the golden inputs are the validation (here: calibration) data
        stored = golden[f"input/{spec.name}"]
    np.testing.assert_allclose(stored.reshape(device_inputs[:6].shape), device_inputs[:6], rtol=0, atol=1e-6)


def test_read_dataset_normalizes_csv_windows_as_the_manifest_says(tmp_path: Path) -> None:
    series = _csv(tmp_path / "cal.csv", rows=20)
    norm = Normalization(mean=(0.5, -1.0, 9.81), std=(0.2, 0.4, 1.5))
    plain = read_dataset(tmp_path / "cal.csv", (InputSpec("x", (1, 8, 3)),), CsvOptions(hop=4))
    scaled = read_dataset(tmp_path / "cal.csv", (InputSpec("x", (1, 8, 3)),), CsvOptions(hop=4, normalization=norm))
    assert plain.arrays["x"].shape == scaled.arrays["x"].shape == (4, 8, 3)
    np.testing.assert_array_equal(plain.arrays["x"][1], series[4:12])
    np.testing.assert_allclose(scaled.arrays["x"][1], (series[4:12] - np.array(norm.mean)) / np.array(norm.std),
                               rtol=1e-6, atol=1e-6)
