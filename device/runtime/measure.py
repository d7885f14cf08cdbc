"""One cell of ``spinal bench``, measured in a fresh process: ``python -m device.runtime.measure SPEC``.

A fresh process per cell keeps the numbers honest: RSS after load is this model's alone, and
cold start (process start to first inference) includes the imports, the bundle check and the load.
SPEC is JSON: ``{"source", "runtime", "artifact", "threads", "delegate", "seconds"}``. The cell prints one
JSON line: load and first-inference times, RSS, latency percentiles, throughput, parity, RuntimeInfo.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from device.percentiles import quantile


def rss_mb() -> float | None:
    """Resident set size of this process in MiB (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def percentiles(ns: list[int]) -> dict[str, float]:
    """p50/p99/max/mean of nanosecond timings, in microseconds."""
    values = sorted(ns)
    return {"p50_us": quantile(values, 0.50) / 1000, "p99_us": quantile(values, 0.99) / 1000,
            "max_us": values[-1] / 1000, "mean_us": sum(values) / len(values) / 1000}


def _time_runs(run: Any, feed: Any, seconds: float) -> tuple[list[int], float]:
    """Each inference's nanoseconds for about ``seconds`` (the clock read every 16 runs), and the time taken."""
    times: list[int] = []
    start = time.perf_counter()
    end = start + seconds
    while True:
        a = time.perf_counter_ns()
        run(feed)
        times.append(time.perf_counter_ns() - a)
        if len(times) % 16 == 0 and time.perf_counter() >= end:
            break
    return times, time.perf_counter() - start


def measure_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, infer once, check parity, then time inferences for ``seconds``."""
    from pathlib import Path

    from device.bundle import is_bundle_path, open_bundle
    from device.errors import SpinalError
    from device.runtime.base import RuntimePolicy
    from device.runtime.parity import check_golden, golden_inputs, random_inputs
    from device.runtime.select import load_model

    source = Path(spec["source"])
    policy = RuntimePolicy(runtime=spec["runtime"], artifact=spec.get("artifact"), threads=spec.get("threads"),
                           delegate=spec.get("delegate"), fail_closed=bool(spec.get("delegate")), autotune=False)
    t0 = time.perf_counter()
    try:
        if is_bundle_path(source):
            with open_bundle(source) as bundle:
                golden = bundle.load_golden() if bundle.manifest.golden else None
                model = load_model(bundle, policy)
                load_s = time.perf_counter() - t0
                rss = rss_mb()
                feed = golden_inputs(golden, model.inputs, 1)[0] if golden else random_inputs(model.inputs, 1)[0]
                model.run(feed)
                t_first = time.time()
                parity = None
                if golden and model.artifact:
                    parity = check_golden(model, bundle.manifest, golden, model.artifact)
        else:
            model = load_model(source, policy)
            load_s = time.perf_counter() - t0
            rss = rss_mb()
            if spec.get("input_shapes"):  # --input-shape: the sizes of a plain file's dynamic axes
                from device.runtime.checks import shaped_inputs

                shapes = {k: tuple(v) for k, v in spec["input_shapes"].items()}
                feed = shaped_inputs(model.inputs, shapes, str(source))
            else:
                feed = random_inputs(model.inputs, 1)[0]
            model.run(feed)
            t_first = time.time()
            parity = None
    except SpinalError as exc:
        return {"error": str(exc)}
    times, elapsed = _time_runs(model.run, feed, float(spec.get("seconds", 1.0)))
    return {
        "t_first": t_first, "load_s": load_s, "rss_after_load_mb": rss, "rss_end_mb": rss_mb(),
        "runs": len(times), "throughput_per_s": len(times) / elapsed, **percentiles(times),
        "parity": None if parity is None else parity.ok,
        "parity_detail": None if parity is None else parity.detail,
        "info": vars(model.info),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    result = measure_cell(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
