"""Cost of each DSP block (device/dsp/) per window, as the device runs it: one window at a time.

For each configuration: the median µs per window of every block (fed its real input: the previous block's
output), then of normalization + layout, measured by ``device.pipeline.preparation_costs`` — the code
``spinal bench`` uses for a bundle's chain.

    python benchmarks/bench_dsp.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device import dsp  # noqa: E402
from device.manifest import Normalization, TensorSpec  # noqa: E402
from device.pipeline import InputPlan, preparation_costs  # noqa: E402

IMU = tuple(f"imu.{c}" for c in ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"))
CASES = [
    ("imu-activity: 50 x 6 at 10 Hz", 50, IMU, 10.0, [{"block": "highpass", "cutoff_hz": 0.3}]),
    ("IMU 2 s: 200 x 6 at 100 Hz", 200, IMU, 100.0, [
        {"block": "highpass", "cutoff_hz": 0.3, "order": 2}, {"block": "lowpass", "cutoff_hz": 20.0, "order": 2},
        {"block": "detrend", "kind": "linear"}, {"block": "resample", "rate_hz": 50.0}]),
    ("IMU 2 s spectral: 200 x 6 at 100 Hz", 200, IMU, 100.0, [
        {"block": "highpass", "cutoff_hz": 0.3},
        {"block": "band_energies", "bands": [[0.5, 2], [2, 5], [5, 10], [10, 25]], "log": True}]),
    ("IMU 2 s features: 200 x 6 at 100 Hz", 200, IMU, 100.0, [
        {"block": "features", "features": list(dsp.FEATURES)}]),
    ("audio 1 s: 16000 x 1 at 16 kHz", 16000, ("mic.level",), 16000.0, [
        {"block": "highpass", "cutoff_hz": 50.0}, {"block": "logmel", "n_fft": 512, "hop": 256, "n_mels": 40}]),
]


def plan_for(window: int, channels: tuple[str, ...], rate: float, chain: list[dict]) -> InputPlan:
    blocks = dsp.parse_chain(chain)
    last = dsp.compile_chain(blocks, dsp.Stage(window, len(channels), rate, channels)).last
    spec = TensorSpec(name="x", shape=(1, last.length, last.channels), layout="NTC", channels=channels,
                      sample_rate_hz=rate, window=window, hop=window, preprocessing=blocks)
    spec = dataclasses.replace(spec, normalization=Normalization((0.0,) * last.channels, (1.0,) * last.channels))
    return InputPlan.for_input(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}; median of "
          f"{args.repeats} runs per block, one window at a time\n")
    print("| window | block | µs per window |")
    print("|---|---|---|")
    for title, window, channels, rate, chain in CASES:
        plan = plan_for(window, channels, rate, chain)
        x = rng.normal(size=(window, len(channels))) + 9.81
        repeats = max(5, args.repeats // 30) if window > 5000 else args.repeats
        costs = preparation_costs(plan, x, repeats)
        for name, us in costs:
            print(f"| {title} | `{name}` | {us:.1f} |")
        print(f"| {title} | **total** | **{sum(us for _, us in costs):.1f}** |")


if __name__ == "__main__":
    main()
