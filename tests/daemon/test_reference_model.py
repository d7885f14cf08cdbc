"""The daemon with the committed reference bundle and a real held-out recording (no host packages
needed, so this also runs in the device-only venv: Python 3.13, numpy 2, LiteRT)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "imu-activity"


def test_walking_recording_is_recognised_end_to_end(tmp_path):
    cfg = tmp_path / "spinal.toml"
    cfg.write_text(f"""
device_id = "ref"
[model]
bundle = "{MODELS / 'imu-activity.spinal'}"
runtime = "litert"
[[sensors]]
id = "imu"
driver = "mpu6050"
rate_hz = 10
[sensors.options]
accel_range_g = 8
gyro_range_dps = 2000
[sensors.sim]
replay = "{MODELS / 'replay' / 'walking-test20.csv'}"
[[sinks]]
type = "jsonl"
kinds = ["prediction", "status"]
[http]
enabled = false
""")
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(cfg),
                           "--sim", "--duration", "5.6"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    loaded = recs[0]["data"]
    assert loaded["event"] == "model_loaded" and loaded["runtime"] == "litert" and loaded["canary"]["vectors"] >= 1
    preds = [r["data"] for r in recs if r["kind"] == "prediction"]
    assert len(preds) >= 1, proc.stderr
    assert preds[0]["window"]["first_seq"] == 0 and preds[0]["window"]["last_seq"] == 49
    assert preds[0]["label"] == "walking" and preds[0]["score"] > 0.9
