"""Runtime benchmarks: Spinal's per-inference overhead against the raw interpreter loop, RSS after load,
cold start, and ``auto``'s pick against the best cell of the ``spinal bench`` matrix.

    python benchmarks/bench_runtime.py [--bundle PATH] [--calls 1000] [--rounds 21] [--seconds 1.0]

Without ``--bundle`` it builds the test bundle of ``tests/runtime/bundles.py`` (a 1-D CNN over an IMU
window, 6 artifacts) and uses it. Prints a markdown section for benchmarks/RESULTS.md.
Goals (issue 4): Spinal <= 1.10 x raw + 3 µs for LiteRT; RSS after load <= 60 MB; cold start <= 1.0 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def raw_loop(runtime: str, path: Path, feed: np.ndarray, threads: int):
    """The loop a user would write against the runtime directly (same file, same threads)."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        outs = [o.name for o in sess.get_outputs()]
        run = sess.run

        def call() -> None:
            run(outs, {name: feed})

        return call
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    i = it.get_input_details()[0]["index"]
    o = it.get_output_details()[0]["index"]
    set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

    def call() -> None:
        set_tensor(i, feed)
        invoke()
        get_tensor(o)

    return call


def timed(call, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t0)
    return out


def overhead(bundle: Path, calls: int, rounds: int) -> list[dict]:
    from device.bundle import open_bundle
    from device.runtime import RuntimePolicy, load_model
    from device.runtime.parity import golden_inputs

    rows = []
    with open_bundle(bundle) as b:
        golden = b.load_golden()
        cases = [(rt, a) for a in b.manifest.artifacts
                 for rt in (["litert"] if a.format == "tflite" else ["onnxruntime"])]
        for runtime, art in cases:
            model = load_model(b, RuntimePolicy(runtime=runtime, artifact=art.path, threads=1))
            feed = golden_inputs(golden, model.inputs, 1)[0]
            raw_feed = model._in[0].to_artifact(next(iter(feed.values())))  # what the file itself takes

            def spinal(model=model, feed=feed) -> None:
                model.run(feed)

            raw = raw_loop(runtime, b.path_of(art.path), raw_feed, 1)
            for f in (spinal, raw):
                timed(f, 200)  # warm up
            s_rounds, r_rounds = [], []
            for _ in range(rounds):  # short interleaved rounds, so that load changes hit both alike
                s_rounds.append(statistics.median(timed(spinal, calls)) / 1000)
                r_rounds.append(statistics.median(timed(raw, calls)) / 1000)
            s_med, r_med = statistics.median(s_rounds), statistics.median(r_rounds)
            extra = statistics.median(s - r for s, r in zip(s_rounds, r_rounds, strict=True))
            ratio = statistics.median(s / r for s, r in zip(s_rounds, r_rounds, strict=True))
            goal = r_med * 1.10 + 3.0
            rows.append({"runtime": runtime, "artifact": art.path, "precision": art.precision, "raw_us": r_med,
                         "spinal_us": s_med, "ratio": ratio, "extra_us": extra, "goal_us": goal,
                         "meets": s_med <= goal})
            model.close()
    return rows


def child(spec: dict) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "device.runtime.measure", json.dumps(spec)], capture_output=True,
                          text=True, cwd=ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["cold_start_s"] = result.pop("t_first") - t0
    return result


def baseline_rss() -> float:
    code = "import numpy; from device.runtime.measure import rss_mb; print(rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return float(out.stdout.strip())


def footprint(bundle: Path, repeats: int) -> list[dict]:
    rows = []
    for runtime, artifact in (("litert", "fp32"), ("litert", "int8"), ("onnxruntime", "fp32")):
        cells = [child({"source": str(bundle), "runtime": runtime, "artifact": artifact, "threads": 1,
                        "seconds": 0.2}) for _ in range(repeats)]
        rows.append({"runtime": runtime, "artifact": cells[0]["info"]["artifact"],
                     "rss_mb": statistics.median(c["rss_after_load_mb"] for c in cells),
                     "cold_s": statistics.median(c["cold_start_s"] for c in cells),
                     "load_ms": statistics.median(c["load_s"] for c in cells) * 1000})
    return rows


def auto_vs_matrix(bundle: Path, seconds: float) -> dict:
    cmd = [sys.executable, "-c", "from device.cli import main; main()", "bench", str(bundle), "--json",
           "--threads", "1,2", "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    data = json.loads(out.stdout)
    cells = [r for r in data["rows"] if "error" not in r and r["parity"] is not False]
    best = min(cells, key=lambda r: r["p50_us"])
    from device.runtime import RuntimePolicy, load_model

    picks = {}
    for threads in (1, 2):
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            model = load_model(bundle, RuntimePolicy(threads=threads, cache_dir=Path(cache)))
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_model(bundle, RuntimePolicy(threads=threads, cache_dir=Path(cache))).close()
            cached = time.perf_counter() - t0
        cell = next(r for r in data["rows"] if r["runtime"] == model.info.runtime and r["threads"] == threads
                    and r["artifact"] == model.info.artifact and r["delegate"] is None)
        picks[threads] = {"runtime": model.info.runtime, "artifact": model.info.artifact, "p50_us": cell["p50_us"],
                          "auto_first_load_s": first, "auto_cached_load_s": cached}
        model.close()
    return {"matrix": data["rows"], "best": best, "picks": picks, "recommended": data["recommended"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = None
    bundle = args.bundle
    if bundle is None:
        from tests.runtime.bundles import build_bundle

        tmp = tempfile.TemporaryDirectory()
        with contextlib.redirect_stdout(io.StringIO()):  # TensorFlow's converter talks on stdout
            bundle = build_bundle(Path(tmp.name) / "imu")
    load0 = os.getloadavg()[0]
    ov = overhead(bundle, args.calls, args.rounds)
    fp = footprint(bundle, args.repeats)
    base = statistics.median(baseline_rss() for _ in range(3))
    av = auto_vs_matrix(bundle, args.seconds)
    load1 = os.getloadavg()[0]
    from device.runtime.select import cpu_features, installed_runtimes

    cpu = cpu_features()
    print(f"Machine: {cpu.model}, {platform.machine()}, {cpu.cores} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, runtimes {installed_runtimes()}; load average {load0:.1f} at the start, "
          f"{load1:.1f} at the end.\n")
    print(f"Per-inference latency, one thread, golden input; {args.rounds} interleaved rounds of {args.calls} calls "
          "each way; medians of the per-round medians (ratio and extra: medians of the per-round values):\n")
    print("| runtime | artifact | raw loop µs | Spinal Model.run µs | ratio | extra µs | goal ≤ 1.10×raw+3 µs |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in ov:
        print(f"| {r['runtime']} | {r['artifact']} | {r['raw_us']:.2f} | {r['spinal_us']:.2f} | {r['ratio']:.2f} | "
              f"{r['extra_us']:+.2f} | {'met' if r['meets'] else 'missed'} ({r['goal_us']:.2f}) |")
    print(f"\nFootprint, fresh process per run, median of {args.repeats} (python + numpy alone: {base:.1f} MB):\n")
    print("| runtime | artifact | RSS after load MB | cold start s (process start → first inference) | load ms |")
    print("|---|---|---:|---:|---:|")
    for r in fp:
        print(f"| {r['runtime']} | {r['artifact']} | {r['rss_mb']:.1f} | {r['cold_s']:.3f} | {r['load_ms']:.1f} |")
    best = av["best"]
    print(f"\n`auto` against the matrix (`spinal bench --threads 1,2 --seconds {args.seconds}`, "
          f"{len(av['matrix'])} cells): best cell {best['runtime']} {best['artifact']} threads={best['threads']} "
          f"p50 {best['p50_us']:.1f} µs.\n")
    print("| threads | auto's pick | its p50 in the matrix µs | best at these threads | pick / best here | "
          "pick / best overall | first load, measuring s | cached load s |")
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    for t, p in av["picks"].items():
        here = min((r for r in av["matrix"] if "error" not in r and r["parity"] is not False and r["threads"] == t),
                   key=lambda r: r["p50_us"])
        print(f"| {t} | {p['runtime']} {p['artifact']} | {p['p50_us']:.1f} | {here['runtime']} {here['artifact']} "
              f"{here['p50_us']:.1f} | {p['p50_us'] / here['p50_us']:.2f} | {p['p50_us'] / best['p50_us']:.2f} | "
              f"{p['auto_first_load_s']:.2f} | {p['auto_cached_load_s']:.3f} |")
    print("\nMatrix:\n\n| runtime | artifact | threads | p50 µs | p99 µs | inf/s | RSS MB | cold s | parity |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in av["matrix"]:
        if "error" in r:
            continue
        print(f"| {r['runtime']} | {r['info']['artifact']} | {r['threads']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | "
              f"{r['throughput_per_s']:.0f} | {r['rss_after_load_mb']:.1f} | {r['cold_start_s']:.2f} | "
              f"{r['parity']} |")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
