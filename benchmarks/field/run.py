"""Run the field benchmark over the corpus (issue 14).

    python benchmarks/field/run.py plain     # spinal inspect / bench --seconds 0.2 / verify on every distinct file
    python benchmarks/field/run.py convert   # spinal convert every ONNX model with its data, then verify the bundle
    python benchmarks/field/run.py score     # score every artifact against the original (score.py)
    python benchmarks/field/run.py table     # print the markdown table and the summary

Each step appends JSON records to CACHE/results/*.json (a file already done is skipped unless --redo).
spinal is run as `python -m device.cli`-equivalent: SPINAL (default: .venv/bin/spinal of this checkout).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))
import contextlib

from spec import SPEC, shape_args

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FIELD_CACHE", Path.home() / ".cache" / "spinal" / "field"))
SPINAL = os.environ.get("SPINAL", str(ROOT / ".venv" / "bin" / "spinal"))
CORPUS = Path(__file__).with_name("corpus.json")


def corpus() -> list[dict]:
    return [r for r in json.loads(CORPUS.read_text()) if "duplicate_of" not in r]


def spinal(args: list[str], timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250")
    cmd = ["nice", "-n", "10", SPINAL, *args]
    t0 = time.monotonic()
    rc, out, peak = watched(cmd, env, timeout)
    short = [str(a).replace(str(Path.home()), "~") for a in args]
    return {"cmd": "spinal " + " ".join(short), "rc": rc, "seconds": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(peak / 2**20),
            "out": out[-6000:], "full": out, "line": one_line(rc, out)}


def watched(cmd: list[str], env: dict, timeout: int) -> tuple[int, str, int]:
    """Run cmd; kill its process tree past `timeout` s or past MAX_RSS_GB of resident memory (this machine is
    shared: an unbounded calibration once took 24 GB and the kernel's OOM killer). Returns rc, output, peak RSS."""
    import tempfile

    import psutil
    limit = float(os.environ.get("MAX_RSS_GB", "10")) * 2**30
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        t0, peak, why = time.monotonic(), 0, ""
        while p.poll() is None:
            try:
                proc = psutil.Process(p.pid)
                rss = sum(x.memory_info().rss for x in [proc, *proc.children(recursive=True)])
            except psutil.Error:
                rss = 0
            peak = max(peak, rss)
            if rss > limit or time.monotonic() - t0 > timeout:
                why = (f"killed by the benchmark: resident memory {rss / 2**30:.1f} GB > {limit / 2**30:.0f} GB"
                       if rss > limit else f"timeout after {timeout}s")
                for x in [*psutil.Process(p.pid).children(recursive=True), psutil.Process(p.pid)]:
                    with contextlib.suppress(psutil.Error):
                        x.kill()
                p.wait()
                break
            time.sleep(1)
        log.seek(0)
        out = log.read()
    rc = p.returncode if not why else (137 if "memory" in why else 124)
    return rc, (out + "\n" + why if why else out), peak


def one_line(rc: int, out: str) -> str:
    if rc == 0:
        return "ok"
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    for pat in (r"^(error|FAIL|Error|.*Error:|refused|.*rejected)", r"FAILED|failed"):
        hit = [ln for ln in lines if re.search(pat, ln)]
        if hit:
            return " ".join(hit[0].split())[:300]
    return (lines[-1] if lines else f"exit {rc}")[:300]


def load(name: str) -> dict:
    p = CACHE / "results" / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def save(name: str, data: dict) -> None:
    (CACHE / "results").mkdir(parents=True, exist_ok=True)
    (CACHE / "results" / f"{name}.json").write_text(json.dumps(data, indent=1))


def step_plain(redo: bool) -> None:
    res = load("plain")
    for row in corpus():
        f = CACHE / row["file"]
        key = f.name
        if key in res and not redo:
            continue
        shp = shape_args(key, "=")
        r = {"inspect": spinal(["inspect", str(f)], 300),
             "bench": spinal(["bench", "--seconds", "0.2", *shp, str(f)], 600),
             "verify": spinal(["verify", *shp, str(f)], 300)}
        if shp:  # what a user gets without telling the sizes
            r["verify_default"] = spinal(["verify", str(f)], 300)
        for v in r.values():
            v.pop("full", None)
        res[key] = r
        print(key, {k: v["rc"] for k, v in r.items()}, flush=True)
        save("plain", res)


def step_convert(redo: bool, only: list[str], ungated: bool = False) -> None:
    """ungated: only the models whose int8 artifacts the gate refused, again with --max-drop 1000 --no-remedies
    (int8 formats only, into bundles-ungated/), so that score.py can say whether the refused int8 was usable."""
    res = load("convert-ungated" if ungated else "convert")
    if ungated:
        gated = load("convert")
        only = only or [k for k, v in gated.items() if k.endswith(".onnx") and v.get("report") and any(
            a.get("precision", "").startswith("int8") for a in v["report"].get("rejected", {}).values())]
    onnx = list(corpus())
    onnx.sort(key=lambda r: r["bytes"])
    for row in onnx:
        f = CACHE / row["file"]
        key = f.name
        if only and key not in only:
            continue
        if key in res and not redo:
            continue
        spec = SPEC.get(key, {})
        out = CACHE / ("bundles-ungated" if ungated else "bundles") / f.stem
        args = ["convert", str(f), "-o", str(out), "--force", "--json"]
        data = CACHE / "data" / f.stem
        if row["format"] == "onnx":
            args += shape_args(key, ":")
            if "calib_samples" in spec:  # see spec.py: the default (200, here 128) does not fit in memory
                args += ["--calibration-samples", str(spec["calib_samples"])]
            if (data / "calib.npz").exists():
                args += ["--calibration", str(data / "calib.npz"), "--validation", str(data / "val.npz")]
            if ungated:
                args += ["--no-remedies", "--formats", "onnx-int8,tflite-int8"]
            for opt in ("task", "task_output", "threshold", "labels", "gate_measure", "max_drop"):
                if opt in spec:
                    args += [f"--{opt.replace('_', '-')}", str(spec[opt])]
            if ungated:  # after the spec's own --max-drop, so that this one wins
                args += ["--max-drop", "1000"]
        r = spinal(args, 900)
        full = r.pop("full")
        r["bundle"] = str(out) if out.exists() else None
        r["report"] = None
        for i in [m.start() + 1 for m in re.finditer(r"\n\{", "\n" + full)]:
            try:  # the report is one JSON object; warnings may come after it
                r["report"] = json.JSONDecoder().raw_decode(full[i - 1:])[0]
                break
            except ValueError:
                continue
        if out.exists():
            r["verify"] = spinal(["verify", str(out)], 600)
            r["verify"].pop("full")
        res[key] = r
        print(key, r["rc"], r["seconds"], r["line"], flush=True)
        save("convert-ungated" if ungated else "convert", res)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["plain", "convert", "ungated", "score", "table"])
    ap.add_argument("--redo", action="store_true")
    ap.add_argument("--only", nargs="*", default=[])
    a = ap.parse_args()
    if a.step == "plain":
        step_plain(a.redo)
    elif a.step == "convert":
        step_convert(a.redo, a.only)
    elif a.step == "ungated":
        step_convert(a.redo, a.only, ungated=True)
    elif a.step == "score":
        import score
        score.main(CACHE)
        score.main(CACHE, "convert-ungated", "score-ungated")
    else:
        import table
        table.main(CACHE)


if __name__ == "__main__":
    main()
