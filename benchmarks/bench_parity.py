"""Golden parity spread: how far each artifact lands from its golden outputs on this CPU, per runtime,
kernel path and thread count, against the bound its bundle carries.

    python benchmarks/bench_parity.py [BUNDLE ...] [--threads 1,2,4] [--json OUT]
    python benchmarks/bench_parity.py --combine vnni.json haswell.json pi4.json   # one table, a column per CPU

Without bundles: every bundle in models/ and the runtime tests' bundle. Device-only (numpy and the
runtimes installed here), so it runs the same on an x86 workstation, under ``qemu-x86_64 -cpu Haswell``
and in the emulated Raspberry Pi (``make test-pi``). Prints a markdown table for benchmarks/RESULTS.md:
max |err| over the golden vectors, the bound, their ratio (must stay < 1) and the decisions.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.bundle import open_bundle  # noqa: E402
from device.errors import SpinalError  # noqa: E402
from device.runtime.base import RUNTIME_FORMAT, RuntimePolicy  # noqa: E402
from device.runtime.delegates import parse_delegate  # noqa: E402
from device.runtime.parity import check_golden  # noqa: E402
from device.runtime.select import Target, cpu_features, installed_runtimes, open_model  # noqa: E402

DEFAULT = [*sorted((ROOT / "models").glob("*/*.spinal")), ROOT / "tests" / "runtime" / "data" / "imu"]


def cells(bundle_path: Path, threads: list[int]) -> list[dict[str, Any]]:
    """One row per artifact x runtime x kernel path (XNNPACK or builtin for TFLite) x threads."""
    rows = []
    installed = installed_runtimes()
    with open_bundle(bundle_path) as bundle:
        manifest, golden = bundle.manifest, bundle.load_golden()
        for art in manifest.artifacts:
            for runtime in (r for r in installed if RUNTIME_FORMAT[r] == art.format):
                kernels = ["cpu", "none"] if art.format == "tflite" else ["cpu"]
                for kernel in kernels:
                    for n in threads:
                        target = Target(runtime, bundle.path_of(art.path), art, manifest, golden)
                        policy = RuntimePolicy(runtime=runtime, artifact=art.path, threads=n, autotune=False)
                        row = {"bundle": manifest.name, "artifact": art.path, "runtime": runtime,
                               "kernels": "XNNPACK" if kernel == "cpu" and art.format == "tflite" else
                               "builtin" if art.format == "tflite" else "default", "threads": n}
                        try:
                            with open_model(target, policy, parse_delegate(kernel)) as model:
                                result = check_golden(model, manifest, golden, art)
                        except (SpinalError, RuntimeError, ValueError) as exc:
                            rows.append({**row, "error": str(exc).splitlines()[0][:80]})
                            continue
                        bound = max([result.tolerance.atol, *result.tolerance.outputs.values()])
                        rows.append({**row, "max_abs_err": result.max_abs_err, "bound": bound, "ok": result.ok,
                                     "decisions": result.decisions})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """One line per bundle x artifact x runtime x kernels; the worst of the thread counts."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["bundle"], r["artifact"], r["runtime"], r["kernels"]), []).append(r)
    lines = ["| bundle | artifact | runtime | kernels | max err | bound | err/bound | decisions |",
             "|---|---|---|---|---|---|---|---|"]
    for (bundle, artifact, runtime, kernels), group in groups.items():
        head = f"| {bundle} | {artifact} | {runtime} | {kernels} | "
        good = [r for r in group if "error" not in r]
        if not good:
            lines.append(head + f"— | — | — | {group[0]['error']} |")
            continue
        worst = max(good, key=lambda r: r["max_abs_err"] / r["bound"] if r["bound"] else 0.0)
        ratio = worst["max_abs_err"] / worst["bound"] if worst["bound"] else 0.0
        failed = " FAIL" if any(r["ok"] is False for r in good) else ""
        lines.append(head + f"{worst['max_abs_err']:.3g} | {worst['bound']:.3g} | {ratio:.2f}{failed} | "
                     f"{worst['decisions'] or '—'} |")
    return "\n".join(lines)


def combined(runs: list[dict[str, Any]]) -> str:
    """One line per bundle x artifact: its bound and the worst |err| each CPU measured (any runtime, kernels,
    threads), from several ``--json`` files (one per CPU)."""
    names = [r.get("label") or f"{r['machine']} {'+'.join(r['flags']) or 'baseline'}" for r in runs]
    worst: dict[tuple[str, str], dict[str, float]] = {}
    bound: dict[tuple[str, str], float] = {}
    for name, run in zip(names, runs, strict=True):
        for r in run["rows"]:
            if "error" in r:
                continue
            key = (r["bundle"], r["artifact"])
            bound[key] = r["bound"]
            worst.setdefault(key, {})[name] = max(worst.get(key, {}).get(name, 0.0), r["max_abs_err"])
    lines = ["| bundle | artifact | bound | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for key, per_cpu in worst.items():
        cells = " | ".join(f"{per_cpu[n]:.3g}" if n in per_cpu else "—" for n in names)
        lines.append(f"| {key[0]} | {key[1]} | {bound[key]:.3g} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", type=Path)
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--label", help="name this CPU in the JSON (under qemu-user, /proc/cpuinfo is the host's)")
    parser.add_argument("--combine", type=Path, nargs="+", help="print one table from earlier --json files")
    args = parser.parse_args()
    if args.combine:
        print(combined([json.loads(p.read_text(encoding="utf-8")) for p in args.combine]))
        return 0
    logging.getLogger("spinal").setLevel(logging.ERROR)  # tflite-runtime's int8 speed warning is not news here
    threads = [int(t) for t in args.threads.split(",")]
    features = cpu_features()
    dot = "int8 dot products" if features.int8_dot else "no int8 dot products"
    print(f"### Parity spread on {platform.machine()} ({features.model}; {dot}), Python {platform.python_version()}\n")
    rows = [row for path in (args.bundles or DEFAULT) for row in cells(path, threads)]
    print(table(rows))
    worst = max((r["max_abs_err"] / r["bound"] for r in rows if "error" not in r and r["bound"]), default=0.0)
    failed = sum(1 for r in rows if r.get("ok") is False)
    print(f"\nworst err/bound {worst:.2f}; {failed} cell(s) over their bound")
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "machine": platform.machine(), "cpu": features.model,
                                         "flags": sorted(features.flags & {"avx2", "avx512f", "avx512_vnni",
                                                                           "asimddp", "i8mm"}),
                                         "rows": rows}, indent=1), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
