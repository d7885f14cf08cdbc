"""`spinal record` under --sim writes a labelled dataset that `spinal convert` and the training code accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device import recording
from tests.conftest import DATA, run_cli

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "imu-activity"


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "spinal.toml"
    cfg.write_text(f"""
device_id = "rec"
[model]
bundle = "{MODELS / 'imu-activity.spinal'}"
[[sensors]]
id = "imu"
driver = "mpu6050"
rate_hz = 10
[sensors.options]
accel_range_g = 8
gyro_range_dps = 2000
[sensors.sim]
replay = "{MODELS / 'replay' / 'walking-test20.csv'}"
orientation = "random"
seed = 4
""")
    return cfg


def test_record_then_convert_and_train(tmp_path):
    out = tmp_path / "walk.csv"
    result = run_cli("record", "--config", _config(tmp_path), "--sim", "-o", out, "--duration", "6",
                     "--label", "walking", "--during", "5-6=standing", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["samples"] == 60 and summary["configured_rate_hz"] == 10.0 and summary["gaps"] == 0
    assert summary["labels"] == {"standing": 10, "walking": 50}
    assert summary["channel_ranges"]["imu.accel_x"]["unit"] == "m/s²"
    rec = recording.read(out)
    assert rec.channels[:3] == ("imu.accel_x", "imu.accel_y", "imu.accel_z") and rec.rate_hz == 10.0
    # the chip reports gravity: about 1 g over the three axes
    assert 8.5 < float(np.linalg.norm(rec.samples[:, :3].mean(axis=0))) < 11.0

    # convert accepts it (a chain, the normalization computed from it)
    bundle = tmp_path / "b"
    conv = run_cli("convert", DATA / "tiny.onnx", "-o", bundle, "--formats", "onnx-fp32", "--window", "8",
                   "--hop", "4", "--channels", "imu.accel_x,imu.accel_y,imu.accel_z", "--preprocess",
                   "highpass:cutoff_hz=0.3", "--calibration", out, "--labels", "walking,standing,a,b")
    assert conv.exit_code == 0, conv.stderr
    spec = json.loads((bundle / "manifest.json").read_text())["inputs"][0]
    assert spec["channels"] == ["imu.accel_x", "imu.accel_y", "imu.accel_z"] and spec["sample_rate_hz"] == 10.0
    assert "normalization" in spec

    # the training code reads it: windows as the device cuts them, through the imu-activity bundle's own chain
    pytest.importorskip("sktime")
    from device.bundle import open_bundle
    from device.pipeline import InputPlan
    from models import datasets, evaluate

    with open_bundle(MODELS / "imu-activity.spinal") as b:
        imu = b.manifest.inputs[0]
        windows, labels = datasets.recorded_windows([out], tuple(f"imu.{c}" for c in imu.channels), imu.window,
                                                    imu.hop)
        assert labels == ("walking",) and windows.shape == (1, 50, 6)
        logits = evaluate.run_artifact(b, b.manifest.artifact("model.fp32.onnx"),
                                       InputPlan.for_input(imu).prepare(windows))
        assert b.manifest.task.labels[int(np.argmax(logits))] == "walking"


def test_record_refuses_bad_input(tmp_path):
    cfg = _config(tmp_path)
    bad = run_cli("record", "--config", cfg, "--sim", "-o", tmp_path / "x.txt", "--duration", "1")
    assert bad.exit_code == 2 and ".csv or an .npz" in bad.stderr
    bad = run_cli("record", "--config", cfg, "--sim", "-o", tmp_path / "x.csv", "--during", "5=walking")
    assert bad.exit_code == 2 and "START-END=LABEL" in bad.stderr
    bad = run_cli("record", "--config", cfg, "--sim", "-o", tmp_path / "x.csv", "--sensor", "nope")
    assert bad.exit_code == 2 and "no such sensor" in bad.stderr


def test_failed_reads_are_gaps_that_start_segments(tmp_path):
    cfg = _config(tmp_path)
    text = cfg.read_text().replace('seed = 4\n', 'seed = 4\nnack_probability = 0.6\nfault_seed = 2\n')
    cfg.write_text(text)
    out = tmp_path / "gappy.npz"
    result = run_cli("record", "--config", cfg, "--sim", "-o", out, "--duration", "4", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed_reads"] > 0 and summary["gaps"] > 0 and summary["segments"] == summary["gaps"] + 1
    assert summary["samples"] + summary["failed_reads"] + summary["missed_ticks"] == 40
    assert any("samples were recorded" in w for w in summary["warnings"]) == (summary["samples"] < 38)
    assert any("no label" in w for w in summary["warnings"])
    rec = recording.read(out)
    assert len(np.unique(rec.segments)) == summary["segments"]
    cut = recording.windows(rec, (), 5, 5)  # no window straddles a failed read
    for start in cut.starts:
        assert len(set(rec.segments[start:start + 5].tolist())) == 1
