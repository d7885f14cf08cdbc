"""``spinal bench PATH``: the matrix runtime x artifact x threads (x delegate where present).

Each cell runs in a fresh process (``python -m device.runtime.measure``), so RSS after load and
cold start (process start to first inference) belong to that cell alone. Reports p50/p99/max
latency, throughput, RSS after load, cold start and golden parity, then the recommended
combination: the one ``auto`` would pick from these numbers (fastest that passed parity, or a
more accurate one within the CPU's margin).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from device.cli.common import PathArg, RuntimeChoice, console, print_json, reports_errors
from device.errors import BadInput

if TYPE_CHECKING:
    from rich.table import Table


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BadInput(f"--threads {text!r}: expected a comma-separated list of integers such as 1,2,4") from None
    if not values or any(not 1 <= v <= 256 for v in values):
        raise BadInput(f"--threads {text!r}: each count must be from 1 to 256")
    return sorted(set(values))


def _matrix(path: Path, runtime: str, threads: list[int], delegates: list[str],
            shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[list[dict[str, Any]], bool]:
    from device.bundle import is_bundle_path, open_bundle
    from device.modelfile import check_model_file
    from device.runtime.base import INSTALL_HINT, RUNTIME_FORMAT, RUNTIMES
    from device.runtime.delegates import parse_delegate
    from device.runtime.select import installed_runtimes

    installed = installed_runtimes()
    if runtime != "all" and runtime not in installed:
        from device.errors import MissingDependency

        raise MissingDependency(f"runtime {runtime} is not installed; install it with: {INSTALL_HINT[runtime]}")
    runtimes = [r for r in RUNTIMES if r in installed and runtime in ("all", r)]
    specs = {d: parse_delegate(None if d == "cpu" else d) for d in delegates}
    is_bundle = is_bundle_path(path)
    if shapes and is_bundle:
        raise BadInput(f"{path}: --input-shape is for plain model files; a bundle's shapes are in its manifest")
    arts: list[tuple[str | None, str, bool]]
    if is_bundle:
        with open_bundle(path) as bundle:
            arts = [(a.path, a.format, a.edgetpu) for a in bundle.manifest.artifacts]
    else:
        arts = [(None, check_model_file(path), False)]
    cells: list[dict[str, Any]] = []
    for art, fmt, edgetpu in arts:
        for rt in runtimes:
            if RUNTIME_FORMAT[rt] != fmt:
                continue
            for name, spec in specs.items():
                if not spec.applies_to(rt) or (edgetpu and spec.kind != "edgetpu"):
                    continue
                cells.extend({"source": str(path), "runtime": rt, "artifact": art, "threads": t,
                              "delegate": None if name == "cpu" else name,
                              **({"input_shapes": {k: list(v) for k, v in shapes.items()}} if shapes else {})}
                             for t in threads)
    return cells, is_bundle


def _run_cell(cell: dict[str, Any], seconds: float) -> dict[str, Any]:
    spec = json.dumps({**cell, "seconds": seconds})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t_spawn = time.time()
    try:
        proc = subprocess.run([sys.executable, "-m", "device.runtime.measure", spec], capture_output=True, text=True,
                              timeout=seconds + 120, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {**cell, "error": "timed out"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**cell, "error": f"the measuring process failed (exit {proc.returncode}): {tail}"}
    result = json.loads(lines[-1])
    if "t_first" in result:
        result["cold_start_s"] = result.pop("t_first") - t_spawn
    return {**cell, **result}


def _recommend(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    from device.runtime.select import Measurement, cpu_features, pick

    ok = [r for r in rows if "error" not in r]
    if not ok:
        return None
    measured = [Measurement(r["runtime"], f"{i}", r["info"]["precision"], r["p50_us"], r.get("parity"))
                for i, r in enumerate(ok)]
    best = pick(measured, cpu_features())
    return ok[int(best.artifact)] if best else None


def _table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="spinal bench", title_justify="left")
    for col in ("runtime", "artifact", "prec", "thr", "delegate", "p50 µs", "p99 µs", "max µs", "inf/s",
                "RSS MB", "cold s", "parity"):
        table.add_column(col, justify="right" if col.endswith(("µs", "/s", "MB", " s", "thr")) else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["runtime"], r.get("artifact") or "", "", str(r["threads"]), r.get("delegate") or "cpu",
                          "", "", "", "", "", "", f"[red]error[/]: {r['error']}")
            continue
        info = r["info"]
        parity = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: "-"}[r["parity"]]
        rss = f"{r['rss_after_load_mb']:.1f}" if r.get("rss_after_load_mb") else "?"
        table.add_row(info["runtime"], info["artifact"], info["precision"], str(r["threads"]),
                      info["delegate"] or info["provider"] or "CPU", f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}",
                      f"{r['max_us']:.0f}", f"{r['throughput_per_s']:.0f}", rss, f"{r['cold_start_s']:.2f}", parity)
    return table


def _preparation(path: Path) -> list[dict[str, Any]]:
    """The cost of turning a raw window into each sensor input (DSP chain block by block, normalization and
    layout), measured on the bundle's golden raw windows; empty for a plain model file."""
    import numpy as np

    from device.bundle import is_bundle_path, open_bundle
    from device.pipeline import InputPlan, preparation_costs

    if not is_bundle_path(path):
        return []
    out = []
    with open_bundle(path) as bundle:
        golden = bundle.load_golden() if bundle.manifest.golden is not None else {}
        for spec in bundle.manifest.inputs:
            if spec.window is None:
                continue
            plan = InputPlan.for_input(spec)
            key = f"window/{spec.name}"
            window = (golden[key][0] if key in golden else
                      np.random.default_rng(0).normal(size=(plan.window, plan.channels)))
            out.append({"input": spec.name, "blocks": [{"block": b, "us": round(us, 2)}
                                                       for b, us in preparation_costs(plan, window)]})
    return out


@reports_errors
def bench(
    path: PathArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False,
    runtime: Annotated[RuntimeChoice, typer.Option(help="Every runtime here (all), or one.")] = RuntimeChoice.all,
    threads: Annotated[str, typer.Option(help="Thread counts, comma-separated (default: 1 and all cores).")] = "",
    seconds: Annotated[float, typer.Option(help="Timed seconds per cell (after load and first inference).")] = 1.0,
    delegate: Annotated[list[str] | None, typer.Option(
        help="Also measure on this delegate/provider (repeatable). Default: CPU + accelerators found here.")] = None,
    input_shape: Annotated[list[str] | None, typer.Option(
        "--input-shape", help="A plain file's input shape, NAME=1,3,224,224 (repeat per input): the size of its "
                              "dynamic axes (default 1).")] = None,
) -> None:
    """Measure latency (p50/p99/max), throughput, RSS after load and cold start for each runtime x artifact x threads.

    A bundle is run on its golden inputs (with a parity check); a plain model file on random inputs.
    Exit 1 when a parity check fails or an artifact cannot be measured on the CPU by any runtime here.
    """
    from device.runtime.checks import parse_input_shapes
    from device.runtime.select import cpu_features, device_key, installed_runtimes

    if not 0 < seconds <= 600:
        raise BadInput(f"--seconds {seconds}: expected a positive number of seconds (at most 600)")
    cores = os.cpu_count() or 1
    thread_list = _threads(threads or ",".join(map(str, sorted({1, cores}))))
    installed = installed_runtimes()
    delegates = ["cpu", *delegate] if delegate else _present_delegates(installed)
    cells, _ = _matrix(path, runtime.value, thread_list, delegates, parse_input_shapes(input_shape))
    if not cells:
        raise BadInput(f"{path}: nothing to measure (no installed runtime runs its artifacts; installed: "
                       f"{', '.join(installed) or 'none'})")
    rows = []
    for i, cell in enumerate(cells, 1):
        if not json_out and console.is_terminal:
            console.print(f"[dim]{i}/{len(cells)} {cell['runtime']} {cell['artifact'] or path.name} "
                          f"threads={cell['threads']} {cell['delegate'] or ''}[/]", end="\r")
        rows.append(_run_cell(cell, seconds))
    best = _recommend(rows)
    features = cpu_features()
    device = {"key": device_key(features, installed), "cpu": features.model, "arch": features.arch,
              "cores": cores, "int8_dot": features.int8_dot, "runtimes": installed}
    failed = [r for r in rows if r.get("parity") is False]
    # An artifact that no runtime could measure on the CPU is broken here (a corrupt file, a runtime that cannot
    # load it). One runtime failing where another measured it (tflite-runtime and a file only LiteRT loads), or
    # a delegate cell failing (the accelerator is not usable here), is reported in the table only.
    cpu = [r for r in rows if r["delegate"] is None]
    measured = {r["artifact"] for r in cpu if "error" not in r}
    broken = [r for r in cpu if "error" in r and r["artifact"] not in measured]
    chain = _preparation(path)
    if json_out:
        print_json({"path": str(path), "device": device, "seconds": seconds, "rows": rows, "recommended": best,
                    "preparation": chain})
    else:
        _print_report(path, rows, best, device, chain, failed, broken)
    if failed or broken:
        raise typer.Exit(1)


def _present_delegates(installed: dict[str, str]) -> list[str]:
    """CPU and the accelerators found here (the default of ``--delegate``)."""
    from device.runtime.delegates import present_delegates

    ort = []
    if "onnxruntime" in installed:
        from device.runtime.onnx import available_providers

        ort = available_providers()
    return ["cpu", *present_delegates(ort)]


def _print_report(path: Path, rows: list[dict[str, Any]], best: dict[str, Any] | None, device: dict[str, Any],
                  chain: list[dict[str, Any]], failed: list[dict[str, Any]], broken: list[dict[str, Any]]) -> None:
    """The table, the device, the recommendation, the preparation costs and what failed."""
    from rich.console import Console
    from rich.markup import escape

    if console.is_terminal:
        console.print(" " * 80, end="\r")
    wide = console if console.is_terminal else Console(width=160, highlight=False)  # pipes get all columns
    wide.print(_table(rows))
    console.print(f"device: {device['cpu']} ({device['arch']}, {device['cores']} cores, int8 dot-product: "
                  f"{'yes' if device['int8_dot'] else 'no'})")
    if best:
        info = best["info"]
        console.print(f"recommended: --runtime {info['runtime']} --artifact {info['artifact']} "
                      f"--threads {best['threads']}{' --delegate ' + best['delegate'] if best['delegate'] else ''}"
                      f"  (p50 {best['p50_us']:.1f} µs)")
    for item in chain:
        console.print(f"preparation of input {item['input']!r} (µs per window, median): "
                      + "; ".join(f"{b['block']} {b['us']:.1f}" for b in item["blocks"]))
    for r in failed:
        console.print(f"[red]parity FAILED[/] {r['runtime']} {r['artifact']}: {r['parity_detail']}")
    for r in broken:
        console.print(f"[red]not measured[/] {r['runtime']} {r['artifact'] or path.name}: {escape(r['error'])}")
