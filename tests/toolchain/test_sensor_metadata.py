"""What the device needs to know about the sensors travels from `spinal convert` options into the manifest."""

from __future__ import annotations

import json

from tests.conftest import DATA, run_cli


def test_channels_units_rate_window_and_normalization_reach_the_manifest(tmp_path):
    out = tmp_path / "bundle"
    result = run_cli(
        "convert", DATA / "tiny.onnx", "-o", out, "--formats", "onnx-fp32", "--name", "tiny-imu",
        "--channels", "imu.accel_x,imu.accel_y,imu.accel_z", "--channel-units", "m/s^2",
        "--sample-rate", "10", "--window", "8", "--hop", "4", "--layout", "NTC",
        "--norm-mean", "0,0,9.81", "--norm-std", "1,1,2", "--labels", "a,b,c,d",
    )
    assert result.exit_code == 0, result.stderr
    spec = json.loads((out / "manifest.json").read_text())["inputs"][0]
    assert spec["channels"] == ["imu.accel_x", "imu.accel_y", "imu.accel_z"]
    assert spec["units"] == ["m/s^2"]
    assert (spec["sample_rate_hz"], spec["window"], spec["hop"], spec["layout"]) == (10.0, 8, 4, "NTC")
    assert spec["normalization"] == {"mean": [0.0, 0.0, 9.81], "std": [1.0, 1.0, 2.0]}
