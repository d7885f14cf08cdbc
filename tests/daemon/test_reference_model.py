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
orientation = "random"   # gravity along a random mounting, the part's offsets and noise, as a real chip reports
seed = 7
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


def _replayed_accuracy(seeds: range) -> tuple[int, int]:
    """Every held-out replay recording through a simulated MPU-6050 at a random mounting (one per seed), read by
    the real driver, windowed and prepared by the device pipeline (chain, normalization), run by the runtime."""
    import numpy as np

    from device.bundle import open_bundle
    from device.pipeline import InputPlan, Windower
    from device.runtime import RuntimePolicy, load_model
    from device.sensors.bus import as_bus
    from device.sensors.registry import make_driver
    from device.sensors.sim import sim_bus_for

    index = json.loads((MODELS / "replay" / "index.json").read_text())
    right = total = 0
    with open_bundle(MODELS / "imu-activity.spinal") as bundle:
        spec = bundle.manifest.inputs[0]
        plan = InputPlan.for_input(spec)
        labels = bundle.manifest.task.labels
        with load_model(bundle, RuntimePolicy(runtime="auto", threads=1)) as model:
            for seed in seeds:
                for rec in index["recordings"]:
                    sim = {"replay": str(MODELS / "replay" / rec["file"]), "orientation": "random", "seed": seed}
                    bus = as_bus(sim_bus_for("mpu6050", None, sim, 10.0))
                    driver = make_driver("mpu6050", bus, None, {"accel_range_g": 8, "gyro_range_dps": 2000})
                    driver.setup()
                    windower = Windower(window=plan.window, hop=plan.hop, channels=plan.channels)
                    for k in range(rec["samples"]):
                        values = driver.read()
                        w = windower.push(k, k, [values[c] for c in spec.channels])
                        if w is None:
                            continue
                        out = model.run({spec.name: plan.prepare(w.data)})[bundle.manifest.task.output]
                        right += labels[int(np.argmax(out))] == rec["label"]
                        total += 1
    return right, total


def test_held_out_recordings_hold_at_random_mountings():
    """Gravity along 8 random orientations, zero-g and zero-rate offsets and datasheet noise: >= 95 % of windows."""
    right, total = _replayed_accuracy(range(100, 108))
    assert total == 8 * 4 * 3
    assert right / total >= 0.95, f"{right} of {total} windows right"
