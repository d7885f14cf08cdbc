"""The daemon under a realistic load: IMU at 100 Hz + BME280 at 1 Hz on simulated buses.

Runs ``spinal run --sim`` as a subprocess for each runtime and reports, from the daemon's own
/healthz (exact percentiles over the last 4096 events) and from /proc:

- window complete → every sink written (JSON lines file, fsync per second) latency p50/p99;
- inference (normalize + model + post-process) p50/p99;
- sampling lateness of the 100 Hz IMU (read finished − scheduled tick) p50/p99;
- daemon CPU % (of one core) and RSS over the measured period; windows dropped.

The model is the reference imu-activity CNN (models/imu-activity) with its input relabelled as
100 Hz (window 50, hop 25: 4 inferences/s), so that it can be fed by a 100 Hz IMU; the compute per
window is the real model's.

    python benchmarks/bench_daemon.py [--seconds 30] [--warmup 5] [--runtimes litert onnxruntime]

``--faults`` measures recovery instead, in process: the simulated MPU-6050 is unplugged for 5 s, the bus
is stuck for 5 s, the chip is unplugged for ``--unplug-s`` (65) s; for each, the seconds from the fault's
end to the first sample, the set-ups and bus transactions per second while it lasted, and what /healthz
said meanwhile. ``SPINAL_CODE=/path/to/other/checkout`` runs another tree's daemon (e.g. before a change).

    python benchmarks/bench_daemon.py --faults [--unplug-s 65]

``--hand`` runs, after each daemon run, the loop a user would write by hand for the same job
(``benchmarks/hand_loop.py``: the same two simulated chips and rates, the artifact the daemon chose, LiteRT,
JSON lines; no HTTP, metrics or supervision) and compares the RSS; ``--rounds N`` interleaves N such pairs.

    python benchmarks/bench_daemon.py --runtimes litert --hand --rounds 3 --seconds 10 --warmup 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("SPINAL_CODE", ROOT))
sys.path.insert(0, str(CODE))

from device.bundle import open_bundle, pack_archive, write_manifest  # noqa: E402

SOURCE_BUNDLE = ROOT / "models" / "imu-activity" / "imu-activity.spinal"
RATE = 100.0


def relabelled_bundle(tmp: Path, chain: bool = True) -> Path:
    """The imu-activity bundle with its input declared at 100 Hz (files untouched, manifest rewritten).

    Its DSP chain's frequencies are scaled with the rate, so each block computes what it computed at 10 Hz
    (the canary still passes); ``chain=False`` drops the chain (run with the canary off: the model then sees
    unfiltered windows) to measure what the chain costs the daemon."""
    with open_bundle(SOURCE_BUNDLE) as bundle:
        root = tmp / "bundle"
        shutil.copytree(bundle.root, root)
        m = bundle.manifest
    scale = RATE / (m.inputs[0].sample_rate_hz or RATE)
    blocks = tuple(dataclasses.replace(b, cutoff_hz=b.cutoff_hz * scale) if hasattr(b, "cutoff_hz") else b
                   for b in m.inputs[0].preprocessing) if chain else ()
    spec = dataclasses.replace(m.inputs[0], sample_rate_hz=RATE, preprocessing=blocks)
    write_manifest(root, dataclasses.replace(m, inputs=(spec, *m.inputs[1:]), name="imu-activity-100hz"))
    return pack_archive(root, tmp / "model.spinal")


CONFIG = """
device_id = "bench"
state_dir = "{tmp}"

[model]
bundle = "{bundle}"
runtime = "{runtime}"
threads = 1
watch = false
canary = {canary}

[[sensors]]
id = "imu"
driver = "mpu6050"
rate_hz = 100
[sensors.options]
accel_range_g = 8
gyro_range_dps = 2000

[[sensors]]
id = "env"
driver = "bme280"
address = 0x76
rate_hz = 1
readings = true

[[sinks]]
type = "jsonl"
path = "{tmp}/records.jsonl"
fsync = "flush"
kinds = ["prediction", "reading", "status"]

[http]
port = 0

[daemon]
status_interval_s = 10
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return rss, hwm


# How the daemon process starts: ``spinal run`` (the CLI), or the same daemon started without the CLI's imports.
ENTRY = {
    "cli": "from device.cli import main; main()",
    "daemon": ("import sys; from pathlib import Path; from device.config import load_config; "
               "from device.daemon.logs import setup_logging; from device.daemon import Daemon, RunOptions; "
               "cfg = load_config(Path(sys.argv[3]), sim=True); setup_logging(cfg.daemon.log_level); "
               "d = Daemon(cfg, RunOptions(sim=True)); d.install_signal_handlers(); sys.exit(d.run())"),
}


def run_one(runtime: str, seconds: float, warmup: float, chain: bool = True, entry: str = "cli") -> dict:
    with tempfile.TemporaryDirectory(prefix="spinal-bench-") as d:
        tmp = Path(d)
        bundle = relabelled_bundle(tmp, chain)
        cfg = tmp / "spinal.toml"
        cfg.write_text(CONFIG.format(tmp=tmp, bundle=bundle, runtime=runtime, canary=str(chain).lower()))
        log = open(tmp / "daemon.log", "w+")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-c", ENTRY[entry], "run", "--config", str(cfg), "--sim"], cwd=CODE,
                                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONPATH": str(CODE)})
        try:
            port = None
            deadline = time.monotonic() + 60
            while port is None and time.monotonic() < deadline:
                time.sleep(0.2)
                m = re.search(r"http://127\.0\.0\.1:(\d+)", (tmp / "daemon.log").read_text())
                port = int(m.group(1)) if m else None
                if proc.poll() is not None:
                    raise SystemExit(f"daemon exited: {(tmp / 'daemon.log').read_text()}")
            time.sleep(warmup)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss, hwm = rss_mib(proc.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                health = json.loads(resp.read())
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        lat = health["latency_ms"]
        imu = health["sensors"]["imu"]
        return {
            "runtime": f"{health['model']['runtime']} ({health['model']['artifact']}, {health['model']['delegate']})"
                       + ("" if chain else ", no DSP chain") + ("" if entry == "cli" else ", without the CLI"),
            "artifact": health["model"]["artifact"], "exit": code, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "rss_mib": rss, "hwm_mib": hwm,
            "w2s_p50": lat["window_to_sink"]["p50"], "w2s_p99": lat["window_to_sink"]["p99"],
            "inf_p50": lat["inference"]["p50"], "inf_p99": lat["inference"]["p99"],
            "late_p50": imu["lateness_ms"]["p50"], "late_p99": imu["lateness_ms"]["p99"],
            "windows": health["windows"], "inferences": health["inferences"], "imu_samples": imu["samples"],
            "missed_ticks": imu["missed_ticks"], "env_samples": health["sensors"]["env"]["samples"],
        }


def run_hand(artifact: str, seconds: float, warmup: float) -> dict:
    """RSS and CPU of ``benchmarks/hand_loop.py`` on ``artifact`` of the benchmark's bundle, measured as the daemon."""
    with tempfile.TemporaryDirectory(prefix="spinal-bench-") as d:
        tmp = Path(d)
        with open_bundle(relabelled_bundle(tmp)) as bundle:
            model = shutil.copy(bundle.path_of(artifact), tmp / Path(artifact).name)
        proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "hand_loop.py"), str(model),
                                 str(tmp / "records.jsonl"), str(warmup + seconds + 30)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(CODE)})
        try:
            time.sleep(warmup)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss, hwm = rss_mib(proc.pid)
            if proc.poll() is not None:
                raise SystemExit(f"hand loop exited with {proc.returncode}")
        finally:
            proc.kill()
            proc.wait()
        lines = (tmp / "records.jsonl").read_text().splitlines()
        return {"cpu_pct": 100 * (c1 - c0) / (t1 - t0), "rss_mib": rss, "hwm_mib": hwm,
                "predictions": sum('"prediction"' in line for line in lines)}


def hand_table(rows: list[dict], hands: list[dict]) -> None:
    print("\n| pair | daemon | daemon RSS / peak MiB | hand loop RSS / peak MiB | ratio | daemon CPU % | hand CPU % |")
    print("|---|---|---|---|---|---|---|")
    for i, (r, h) in enumerate(zip(rows, hands, strict=True)):
        print(f"| {i + 1} | {r['runtime']} | {r['rss_mib']:.1f} / {r['hwm_mib']:.1f} | {h['rss_mib']:.1f} / "
              f"{h['hwm_mib']:.1f} "
              f"| {r['rss_mib'] / h['rss_mib']:.2f}x | {r['cpu_pct']:.1f} | {h['cpu_pct']:.1f} |")
    for kind in dict.fromkeys(r["runtime"] for r in rows):
        ratios = [r["rss_mib"] / h["rss_mib"] for r, h in zip(rows, hands, strict=True) if r["runtime"] == kind]
        print(f"\nmedian RSS ratio {kind} / hand loop: {statistics.median(ratios):.2f}x")


FAULT_CONFIG = """
device_id = "bench"
state_dir = "{tmp}"

[model]
bundle = "{bundle}"
runtime = "onnxruntime"
watch = false

[[sensors]]
id = "imu"
driver = "mpu6050"
rate_hz = 100
[sensors.options]
accel_range_g = 8
gyro_range_dps = 2000

[[sinks]]
type = "jsonl"
path = "{tmp}/records.jsonl"
fsync = "flush"

[http]
enabled = false
"""


def _counter(metrics: object, name: str) -> float:
    metric = getattr(metrics, name, None)  # spinal_sensor_probes does not exist before the change
    return metric.labels("imu").get() if metric is not None else float("nan")


def fault_run(kind: str, fault_s: float) -> dict:
    """One fault on the simulated IMU, in process; recovery measured to the first sample after its end."""
    import collections
    import threading

    from device.config import load_config
    from device.daemon import Daemon, RunOptions

    with tempfile.TemporaryDirectory(prefix="spinal-bench-") as d:
        tmp = Path(d)
        cfg = tmp / "spinal.toml"
        cfg.write_text(FAULT_CONFIG.format(tmp=tmp, bundle=relabelled_bundle(tmp)))
        daemon = Daemon(load_config(cfg), RunOptions(sim=True))
        runner = threading.Thread(target=daemon.run, daemon=True)
        runner.start()
        st = daemon.sensor_states["imu"]
        while not (daemon.phase == "running" and st.state == "ok" and daemon.inferences >= 2):
            time.sleep(0.05)
        simbus = daemon.samplers[0].open_driver.bus.raw
        tx0, setups0, probes0 = simbus.transactions, _counter(daemon.metrics, "retries"), \
            _counter(daemon.metrics, "probes")
        seen: collections.Counter[str] = collections.Counter()
        watchdog_ok = 0
        t_start = time.monotonic()
        if kind == "unplug":
            simbus.unplug(0x68)
        else:
            simbus.stick(fault_s)
        while time.monotonic() - t_start < fault_s:
            seen[daemon.health()["status"]] += 1
            watchdog_ok += daemon.healthy()[0]
            time.sleep(0.1)
        end_ns = time.monotonic_ns()
        tx, setups, probes = simbus.transactions - tx0, _counter(daemon.metrics, "retries") - setups0, \
            _counter(daemon.metrics, "probes") - probes0
        if kind == "unplug":
            simbus.replug(0x68)  # power-cycled: registers at power-on values, it needs a set-up
        while not (st.state == "ok" and (st.last_sample_ns or 0) > end_ns):
            time.sleep(0.002)
        recovery = (st.last_sample_ns - end_ns) / 1e9
        daemon.request_stop("bench over")
        runner.join(timeout=30)
        return {"fault": f"{kind} {fault_s:g} s", "recovery_s": round(recovery, 3), "setups": setups,
                "probes": probes, "bus_tx_per_s": round(tx / fault_s, 1), "health": dict(seen),
                "watchdog_ok": f"{watchdog_ok} of {sum(seen.values())}"}


def faults(unplug_s: float) -> None:
    rows = [fault_run("unplug", 5.0), fault_run("stuck", 5.0), fault_run("unplug", unplug_s)]
    print(f"code: {CODE}\n")
    print("| fault | recovery after its end (s) | set-ups during it | probes | bus transactions/s | /healthz status "
          "(samples every 0.1 s) | watchdog condition ok |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fault']} | {r['recovery_s']:.3f} | {r['setups']:g} | {r['probes']:g} | {r['bus_tx_per_s']} "
              f"| {r['health']} | {r['watchdog_ok']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--runtimes", nargs="+", default=["litert", "onnxruntime"])
    parser.add_argument("--without-chain", action="store_true",
                        help="also run each runtime with the bundle's DSP chain removed (canary off)")
    parser.add_argument("--faults", action="store_true", help="measure recovery from sensor faults instead")
    parser.add_argument("--unplug-s", type=float, default=65.0, help="the long unplug of --faults")
    parser.add_argument("--hand", action="store_true",
                        help="after each litert run, run the hand-written LiteRT loop and compare RSS")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the runs (interleaved with --hand)")
    parser.add_argument("--entry", choices=sorted(ENTRY), nargs="+", default=["cli"],
                        help="start the daemon as `spinal run` (cli) and/or without the CLI's imports (daemon)")
    args = parser.parse_args()
    if args.faults:
        faults(args.unplug_s)
        return
    rows, hands, pairs = [], [], []
    for _ in range(args.rounds):
        for rt in args.runtimes:
            for entry in args.entry:
                rows.append(run_one(rt, args.seconds, args.warmup, entry=entry))
                if args.hand and rows[-1]["runtime"].startswith("litert"):
                    hands.append(run_hand(rows[-1]["artifact"], args.seconds, args.warmup))
                    pairs.append(rows[-1])
            if args.without_chain:
                rows.append(run_one(rt, args.seconds, args.warmup, chain=False))
    print(f"IMU 100 Hz + BME280 1 Hz, {args.seconds:g} s measured after {args.warmup:g} s warm-up\n")
    print("| runtime | window→sink p50 / p99 (ms) | inference p50 / p99 (ms) | IMU lateness p50 / p99 (ms) "
          "| CPU % (1 core) | RSS / peak (MiB) | windows run / dropped | missed ticks |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        w = r["windows"]
        print(f"| {r['runtime']} | {r['w2s_p50']:.3f} / {r['w2s_p99']:.3f} | {r['inf_p50']:.3f} / {r['inf_p99']:.3f} "
              f"| {r['late_p50']:.3f} / {r['late_p99']:.3f} | {r['cpu_pct']:.1f} | {r['rss_mib']:.0f} / "
              f"{r['hwm_mib']:.0f} | {r['inferences']} / {w['dropped_behind'] + w['skipped_gap']} "
              f"| {r['missed_ticks']} of {r['imu_samples']} |")
    if hands:
        hand_table(pairs, hands)
    print()
    print(json.dumps({"daemon": rows, "hand": hands}, indent=1))


if __name__ == "__main__":
    main()
