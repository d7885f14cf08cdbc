#!/usr/bin/env python3
"""The demo behind `make demo`: `spinal run` on a simulated MPU-6050 replaying held-out recordings.

1. Concatenates the held-out BasicMotions TEST recordings in ``models/imu-activity/replay``
   (one per activity, 10 s each at 10 Hz) into ``out/demo/replay.csv`` and remembers which
   samples belong to which activity.
2. Runs ``spinal run --config firmware/demo.toml --sim --duration 30`` (with a fresh ``seed``, written to
   ``out/demo/demo.toml``): the simulated chip serves one recorded sample per register read, adding what a
   real MPU-6050 reports (1 g along a random mounting orientation, its zero-g and zero-rate offsets,
   datasheet noise), so the 10 Hz sampler replays the recordings in real time through the real driver,
   windows, the bundle's DSP chain (a high-pass that removes gravity), normalization, the model and the
   JSONL sink.
3. Prints every prediction as it arrives and, at the end, how many windows it got right.
   Windows that span two recordings (half one activity, half another) are shown but not scored.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "models" / "imu-activity" / "replay"
OUT = ROOT / "out" / "demo"


def build_replay() -> tuple[list[str], int]:
    """Write out/demo/replay.csv; return the label of each recording (in order) and its length."""
    index = json.loads((REPLAY / "index.json").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "state").mkdir(exist_ok=True)
    labels, lengths, rows = [], [], []
    header = None
    for rec in index["recordings"]:
        lines = [ln for ln in (REPLAY / rec["file"]).read_text().splitlines() if ln.strip()]
        cols = lines[0].split(",")
        keep = [i for i, c in enumerate(cols) if c != "time_s"]
        header = [cols[i] for i in keep]
        body = [[ln.split(",")[i] for i in keep] for ln in lines[1:]]
        rows += body
        labels.append(rec["label"])
        lengths.append(len(body))
    if len(set(lengths)) != 1:
        raise SystemExit(f"replay recordings have different lengths {lengths}")
    text = f"# sample_rate_hz={index['sample_rate_hz']}\n" + ",".join(header or []) + "\n"
    text += "".join(",".join(r) + "\n" for r in rows)
    (OUT / "replay.csv").write_text(text)
    return labels, lengths[0]


def mounted_config(config: Path, seed: int) -> Path:
    """``config`` with ``seed = N`` for the simulated chip, written to out/demo/demo.toml (paths made absolute)."""
    text = config.read_text()
    lines = [f"seed = {seed}" if line.split("#")[0].strip().startswith("seed =") else line
             for line in text.splitlines()]
    text = "\n".join(lines).replace('"../', f'"{config.parent.parent.as_posix()}/') + "\n"
    path = OUT / "demo.toml"
    path.write_text(text)
    return path


def gravity_reading(seed: int) -> str:
    """What the simulated chip reads at rest with this seed (gravity and offsets), in m/s²."""
    sys.path.insert(0, str(ROOT))
    from device.sensors.sim.mpu6050 import SimMPU6050

    chip = SimMPU6050(orientation="random", seed=seed)
    x, y, z = chip.gravity + chip.accel_offset
    return f"({x:+.2f}, {y:+.2f}, {z:+.2f}) m/s²"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    parser.add_argument("--config", default=str(ROOT / "firmware" / "demo.toml"))
    parser.add_argument("--seed", type=int, default=None, help="the simulated chip's seed (mounting, offsets, "
                                                                 "noise); default: a new random one")
    args = parser.parse_args()
    labels, length = build_replay()
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    config = mounted_config(Path(args.config), seed)
    total = length * len(labels)
    print(f"demo: replaying {len(labels)} held-out BasicMotions recordings ({', '.join(labels)}; "
          f"{length} samples each at 10 Hz) through a simulated MPU-6050 for {args.duration:g} s", flush=True)
    print(f"demo: the chip is mounted at a random orientation (seed {seed}); at rest it reads "
          f"{gravity_reading(seed)} — gravity plus its offsets — and adds its datasheet noise", flush=True)
    cmd = [sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(config), "--sim",
           "--duration", str(args.duration)]
    print("demo: $ spinal " + " ".join(cmd[3:]), flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1)
    right = scored = unscored = 0
    model = None
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print(line, end="")
            continue
        data = rec["data"]
        if rec["kind"] == "status" and data.get("event") == "model_loaded":
            model = data
            print(f"demo: model {data['name']} on {data['runtime']} {data['version']} ({data['artifact']}, "
                  f"{data['delegate']}); canary {data['canary']['vectors']} golden vectors ok, "
                  f"{data['canary']['median_ms']:.3f} ms median", flush=True)
            continue
        if rec["kind"] != "prediction":
            continue
        first, last = data["window"]["first_seq"], data["window"]["last_seq"]
        seg_first, seg_last = (first % total) // length, (last % total) // length
        truth = labels[seg_first] if seg_first == seg_last else None
        if truth is None:
            verdict = f"spans {labels[seg_first]}→{labels[seg_last]} (not scored)"
            unscored += 1
        else:
            scored += 1
            right += data["label"] == truth
            verdict = f"truth {truth:<9} {'right' if data['label'] == truth else 'WRONG'}"
        print(f"  {time.monotonic() - started:5.1f} s  samples {first:3d}-{last:3d}  →  {data['label']:<9} "
              f"p={data['score']:.2f}  {data['inference_ms']:.2f} ms   {verdict}", flush=True)
    code = proc.wait()
    if code != 0:
        print(f"demo: spinal run exited with {code}", file=sys.stderr)
        return code
    if model is None or scored == 0:
        print("demo: no scored windows (was the run too short?)", file=sys.stderr)
        return 1
    print(f"demo: {right} of {scored} windows right ({100.0 * right / scored:.0f} %) with the chip mounted at "
          f"seed {seed}'s random orientation"
          + (f"; {unscored} window(s) spanning two recordings not scored" if unscored else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
