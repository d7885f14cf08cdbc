"""Sensor layer benchmarks on the simulated bus.

1. Per-read cost: each driver's ``read()`` on a SimBus (the Python cost of the driver, the I2CBus
   wrapper and the simulated chip; the datasheet waits of forced/single-shot modes included where
   the driver has them), and a raw 14-byte smbus2-style burst for comparison.
2. Rate steadiness: a sampler thread reading an MPU-6050 at 1 kHz and one reading a BME280 (normal
   mode) at 50 Hz, each paced by ``device.sensors.pacing.Pacer``, the pacer of the daemon's samplers and
   of ``spinal sensors read`` (catch-up of short hiccups, skipped ticks when far behind): achieved rate,
   and the lateness of each read's start after its deadline (p50/p99/max), alone and both at once on one
   bus, with plain sleeps (as the daemon) and with a 200 µs spin before each deadline.

    python benchmarks/bench_sensors.py [--seconds 5] [--reads 2000] [--json out.json]

Prints Markdown tables (pasted into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from typing import Any

from device.percentiles import quantile
from device.sensors.bus import I2CBus
from device.sensors.mpu6050 import MPU6050
from device.sensors.pacing import Pacer
from device.sensors.registry import make_driver
from device.sensors.sim import SimADS1115, SimBME280, SimBus, SimMPU6050, SimSHT3x


def time_calls(func, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        func()
        out.append((time.perf_counter_ns() - t) / 1000.0)
    return out


def per_read(reads: int) -> list[dict[str, Any]]:
    MPU6050.reset_wait_s = 0.0
    cases = [
        ("raw SimBus.read_i2c_block_data(0x68, 0x3B, 14)", None, None, None, reads),
        ("mpu6050 read() (14-byte burst)", "mpu6050", SimMPU6050(), {}, reads),
        ("bme280 read(), normal mode (8-byte burst + compensation)", "bme280", SimBME280(), {"mode": "normal"}, reads),
        ("bme280 read(), forced x1 (includes the 9.3 ms measurement wait)", "bme280", SimBME280(), {}, 40),
        ("sht3x read(), single-shot high (includes the 15.5 ms wait)", "sht3x", SimSHT3x(), {}, 40),
        ("ads1115 read(), 1 channel, 860 SPS (includes the 1.16 ms conversion)", "ads1115", SimADS1115(), {}, 200),
        ("ads1115 read(), 4 channels, 860 SPS", "ads1115", SimADS1115(),
         {"channels": ["ain0", "ain1", "ain2", "ain3"]}, 100),
    ]
    rows = []
    from device.sensors import bme280 as bme
    from device.sensors.sim import DATASHEET_CALIBRATION as cal

    for method in ("int", "float"):   # the driver's share of a BME280 read: the datasheet maths alone
        samples = time_calls(lambda m=method: bme.compensate(415148, 519888, 30000, cal, m), reads)
        rows.append({"case": f"bme280 compensate() alone, {method}", "n": reads,
                     "median_us": statistics.median(samples), "p99_us": quantile(sorted(samples), 0.99)})
    for label, kind, device, options, n in cases:
        if kind is None:
            raw = SimBus({0x68: SimMPU6050()})
            raw.write_byte_data(0x68, 0x6B, 0x01)
            samples = time_calls(lambda raw=raw: raw.read_i2c_block_data(0x68, 0x3B, 14), n)
        else:
            bus = I2CBus(SimBus({device.default_address: device}))
            drv = make_driver(kind, bus, device.default_address, options)
            drv.setup()
            drv.read()
            samples = time_calls(drv.read, n)
        rows.append({"case": label, "n": n, "median_us": statistics.median(samples),
                     "p99_us": quantile(sorted(samples), 0.99)})
    return rows


def sample(drv, rate: float, seconds: float, spin_s: float, out: dict[str, Any]) -> None:
    """The daemon sampler's loop without its fault handling: wait for the tick, read, next tick."""
    pacer = Pacer(rate, spin_s=spin_s)
    late: list[float] = []
    starts: list[int] = []
    end = time.monotonic_ns() + int(seconds * 1e9)
    while time.monotonic_ns() < end:
        deadline = pacer.wait()
        assert deadline is not None  # no stop event: the wait always ends at the deadline
        start = time.monotonic_ns()
        starts.append(start)
        late.append((start - deadline) / 1000.0)
        drv.read()
        pacer.advance()
    n = len(starts)
    achieved = (n - 1) / ((starts[-1] - starts[0]) / 1e9)   # reads per second between the first and last read
    ordered = sorted(late)
    out.update({"target_hz": rate, "achieved_hz": achieved, "reads": n, "skipped_ticks": pacer.missed_ticks,
                "late_p50_us": quantile(ordered, 0.5), "late_p99_us": quantile(ordered, 0.99),
                "late_max_us": ordered[-1]})


def steadiness(seconds: float) -> list[dict[str, Any]]:
    MPU6050.reset_wait_s = 0.0
    rows = []
    for spin_s, pacing in ((0.0, "sleep only (the daemon's)"), (0.0002, "sleep + 200 µs spin")):
        for together in (False, True):
            sim = SimBus({0x68: SimMPU6050(), 0x76: SimBME280()})
            imu = make_driver("mpu6050", I2CBus(sim), 0x68, {"dlpf": 1})
            env = make_driver("bme280", I2CBus(sim), 0x76, {"mode": "normal"})
            imu.setup()
            env.setup()
            jobs = [("mpu6050", imu, 1000.0), ("bme280", env, 50.0)]
            results: dict[str, dict[str, Any]] = {name: {} for name, _, _ in jobs}
            if together:
                threads = [threading.Thread(target=sample, args=(d, r, seconds, spin_s, results[name]))
                           for name, d, r in jobs]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            else:
                for name, d, r in jobs:
                    sample(d, r, seconds, spin_s, results[name])
            for name, _, _ in jobs:
                rows.append({"sensor": name, "pacing": pacing, "threads": "both at once" if together else "alone",
                             **results[name]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="Duration of each steadiness run.")
    ap.add_argument("--reads", type=int, default=2000, help="Reads per fast per-read case.")
    ap.add_argument("--json", help="Also write the results here.")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}\n")
    reads = per_read(args.reads)
    print("| case | reads | median µs | p99 µs |\n|---|---:|---:|---:|")
    for r in reads:
        print(f"| {r['case']} | {r['n']} | {r['median_us']:.1f} | {r['p99_us']:.1f} |")
    steady = steadiness(args.seconds)
    print("\n| sensor | pacing | threads | target Hz | achieved Hz | skipped ticks | late p50 µs | late p99 µs "
          "| late max µs |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in steady:
        print(f"| {r['sensor']} | {r['pacing']} | {r['threads']} | {r['target_hz']:g} | {r['achieved_hz']:.2f} | "
              f"{r['skipped_ticks']} | {r['late_p50_us']:.0f} | {r['late_p99_us']:.0f} | {r['late_max_us']:.0f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"per_read": reads, "steadiness": steady}, fh, indent=2)


if __name__ == "__main__":
    main()
