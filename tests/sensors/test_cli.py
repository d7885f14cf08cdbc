"""``spinal sensors scan`` and ``spinal sensors read``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device.cli import app
from device.sensors.sim import SimMPU6050

from .conftest import write_csv


@pytest.fixture
def run():
    runner = CliRunner()

    def go(*args: str):
        return runner.invoke(app, ["sensors", *args])

    return go


def test_scan_sim_json(run) -> None:
    r = run("scan", "--sim", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    chips = {d["address"]: d["chip"] for d in data["devices"]}
    assert chips == {"0x44": None, "0x48": "ads1115", "0x68": "mpu6050", "0x76": "bme280", "0x77": "bmp280"}


def test_scan_sim_table(run) -> None:
    r = run("scan", "--sim", "--bus", "3")
    assert r.exit_code == 0
    assert "simulated I2C bus 3: 5 device(s)" in r.stdout
    assert "60:  -- -- -- -- -- -- -- -- 68" in r.stdout and "mpu6050" in r.stdout


def test_scan_without_the_bus_says_how_to_enable_it(run) -> None:
    r = run("scan", "--bus", "97")
    assert r.exit_code == 2
    assert "/dev/i2c-97 does not exist" in r.output and "raspi-config" in r.output


def test_scan_bad_range(run) -> None:
    r = run("scan", "--sim", "--first", "0x50", "--last", "0x10")
    assert r.exit_code == 2 and "is above --last" in r.output
    r = run("scan", "--sim", "--first", "0x90")
    assert r.exit_code == 2 and "outside the 7-bit range" in r.output


def test_read_json_lines(run) -> None:
    r = run("read", "bme280@0x76", "--sim", "--count", "3", "--rate", "200", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3
    assert lines[0]["sensor"] == "bme280@0x76" and set(lines[0]["values"]) == {"temperature", "pressure", "humidity"}
    assert lines[0]["units"]["pressure"] == "Pa"
    assert lines[0]["timestamp_ns"] < lines[1]["timestamp_ns"] < lines[2]["timestamp_ns"]


def test_read_replay_with_options(run, imu_recording) -> None:
    path, rows = imu_recording
    r = run("read", "mpu6050", "--sim", "--replay", str(path), "-n", "5", "-r", "1000", "--json",
            "-o", "accel_range_g=4", "-o", "gyro_unit=deg/s")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    # the simulated part (seed 0, flat) adds its zero-g and zero-rate offsets and its noise to the recording
    part = SimMPU6050(seed=0)
    accel_x = [x["values"]["accel_x"] - part.accel_offset[0] - part.gravity[0] for x in lines]
    assert accel_x == pytest.approx(rows[:5, 0], abs=0.15)              # noise: 0.026 m/s² RMS at 44 Hz
    assert lines[0]["units"]["gyro_x"] == "°/s"
    gyro_y = lines[0]["values"]["gyro_y"] - np.degrees(part.gyro_offset[1])
    assert gyro_y == pytest.approx(np.degrees(rows[0, 4]), abs=0.2)    # noise: 0.032 °/s RMS at 42 Hz


def test_read_table(run) -> None:
    r = run("read", "ads1115@0x48", "--sim", "-n", "4", "-r", "100", "-o", "channels=ain0,ain1_ain3")
    assert r.exit_code == 0, r.output
    assert "ads1115@0x48" in r.stdout and "ain1_ain3" in r.stdout and "4 reads" in r.stdout


def test_read_with_a_sim_config(run, tmp_path: Path) -> None:
    write_csv(tmp_path / "rh.csv", ["temperature", "humidity"], np.array([[18.5, 61.0], [18.6, 60.0]]))
    cfg = tmp_path / "bus.toml"
    cfg.write_text('[sht]\nkind = "sht3x"\naddress = 0x45\nreplay = "rh.csv"\nnoise = 0\nenforce_timing = false\n'
                   "[faults]\nnack_probability = 0.2\nseed = 1\n")
    r = run("read", "sht3x@0x45", "--sim-config", str(cfg), "-n", "4", "--rate", "100", "--json")
    assert r.exit_code == 0, r.output
    temps = [json.loads(x)["values"]["temperature"] for x in r.stdout.splitlines()]
    assert temps == pytest.approx([18.5, 18.6, 18.5, 18.6], abs=0.01)


@pytest.mark.parametrize(("args", "code", "message"), [
    (("read", "bme680@0x76", "--sim"), 2, "unknown sensor driver 'bme680'"),
    (("read", "bme280@76x", "--sim"), 2, "write it as DRIVER@ADDRESS"),
    (("read", "bme280@0x70", "--sim", "-n", "1"), 2, "no bme280 answers on simulated I2C bus 1 at 0x70"),
    (("read", "mpu6050", "--sim", "-o", "accel_range_g=3"), 2, "mpu6050 option 'accel_range_g': must be one of"),
    (("read", "mpu6050", "--sim", "-o", "accel_range_g"), 2, "write it as KEY=VALUE"),
    (("read", "bmp280@0x76", "--sim", "-n", "1"), 2, "chip id 0x60 is a BME280, expected 0x58"),
    (("read", "mpu6050", "--replay", "x.csv"), 2, "--replay needs --sim"),
    (("read", "mpu6050", "--sim", "--replay", "missing.csv"), 2, "recording missing.csv does not exist"),
])
def test_read_errors(run, args, code, message) -> None:
    r = run(*args)
    assert r.exit_code == code, r.output
    assert message in " ".join(r.output.split())
    assert "Traceback" not in r.output
