"""`spinal run --sim` serves each configured sensor's simulated chip where its driver looks for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_sim_reads_a_bmp280_configured_without_an_address(tmp_path, bundles):
    # The BMP280 driver's default address is 0x76; the simulated chip must answer there (it used to sit
    # at 0x77, so this sensor never answered under --sim while `run --check --sim` passed).
    cfg = tmp_path / "spinal.toml"
    cfg.write_text(f"""
device_id = "sim-pi"
state_dir = "{tmp_path}"
[model]
bundle = "{bundles['good']}"
watch = false
[[sensors]]
id = "imu"
driver = "mpu6050"
rate_hz = 50
[[sensors]]
id = "air"
driver = "bmp280"
rate_hz = 20
readings = true
[[sinks]]
type = "jsonl"
kinds = ["reading", "status"]
[http]
enabled = false
""")
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(cfg),
                           "--sim", "--duration", "1.5"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    readings = [r["data"] for r in recs if r["kind"] == "reading" and r["source"] == "air"]
    assert len(readings) >= 5, proc.stderr
    assert 90000 < readings[-1]["values"]["pressure"] < 110000 and set(readings[-1]["values"]) == {"temperature",
                                                                                                   "pressure"}
