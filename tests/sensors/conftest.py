"""Fixtures for the sensor tests: simulated buses, and no long datasheet waits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.sensors.mpu6050 import MPU6050
from device.sensors.sim import SimBus


@pytest.fixture(autouse=True)
def _short_mpu_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    # The register map asks for 100 ms after a reset; the simulated chip does not need it.
    monkeypatch.setattr(MPU6050, "reset_wait_s", 0.0)


def write_csv(path: Path, channels: list[str], rows: np.ndarray, rate_hz: float | None = 100.0) -> Path:
    lines = [f"# sample_rate_hz={rate_hz}"] if rate_hz else []
    lines.append(",".join(channels))
    lines += [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def imu_recording(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 50-sample MPU-6050 recording in SI units (m/s², rad/s, °C) at 100 Hz: body motion, no gravity
    (the simulated chip adds gravity, offsets and noise unless told not to)."""
    rng = np.random.default_rng(7)
    n = 50
    t = np.arange(n) / 100.0
    rows = np.stack([
        0.5 * np.sin(2 * np.pi * 2 * t), rng.normal(0, 0.3, n), rng.normal(0, 0.5, n),
        0.3 * np.cos(2 * np.pi * 2 * t), rng.normal(0, 0.1, n), np.full(n, -0.2),
        25.0 + 0.01 * np.arange(n),
    ], axis=1)
    cols = ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z", "temperature"]
    return write_csv(tmp_path / "imu.csv", cols, rows), rows


@pytest.fixture
def sim_bus() -> SimBus:
    from device.sensors.sim import default_sim_bus

    return default_sim_bus()
