"""Run the field benchmark over the corpus (issue 14).

    python benchmarks/field/run.py plain     # spinal inspect / bench --seconds 0.2 / verify on every distinct file
    python benchmarks/field/run.py convert   # spinal convert every ONNX model with its data, then verify the bundle
    python benchmarks/field/run.py score     # score every artifact against the original (score.py)
    python benchmarks/field/run.py table     # print the markdown table and the summary

Each step appends JSON records to CACHE/results/*.json (a file already done is skipped unless --redo).
spinal is run as `python -m device.cli.main`-equivalent: SPINAL (default: .venv/bin/spinal of this checkout).
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
from spec import SPEC, shape_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FIELD_CACHE", Path.home() / ".cache" / "spinal" / "field"))
SPINAL = os.environ.get("SPINAL", str(ROOT / ".venv" / "bin" / "spinal"))
CORPUS = Path(__file__).with_name("corpus.json")


def corpus() -> list[dict]:
    return [r for r in json.loads(CORPUS.read_text()) if "duplicate_of" not in r]


def spinal(args: list[str], timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = ["nice", "-n", "10", SPINAL, *args]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"timeout after {timeout}s\n" + ((e.stdout or b"").decode(errors="replace")
                                                        if isinstance(e.stdout, bytes) else (e.stdout or ""))
    short = [str(a).replace(str(Path.home()), "~") for a in args]
    return {"cmd": "spinal " + " ".join(short), "rc": rc, "seconds": round(time.monotonic() - t0, 1),
            "out": out[-6000:], "full": out, "line": one_line(rc, out)}


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


def step_convert(redo: bool, only: list[str]) -> None:
    res = load("convert")
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
        out = CACHE / "bundles" / f.stem
        args = ["convert", str(f), "-o", str(out), "--force", "--json"]
        data = CACHE / "data" / f.stem
        if row["format"] == "onnx":
            args += shape_args(key, ":")
            if (data / "calib.npz").exists():
                args += ["--calibration", str(data / "calib.npz"), "--validation", str(data / "val.npz")]
            for opt in ("task", "threshold", "labels"):
                if opt in spec:
                    args += [f"--{opt}", str(spec[opt])]
        r = spinal(args, 900)
        full = r.pop("full")
        r["bundle"] = str(out) if out.exists() else None
        try:
            r["report"] = json.loads(full[full.index("\n{") + 1:] if "\n{" in full else full[full.index("{"):])
        except ValueError:
            r["report"] = None
        if out.exists():
            r["verify"] = spinal(["verify", str(out)], 600)
            r["verify"].pop("full")
        res[key] = r
        print(key, r["rc"], r["seconds"], r["line"], flush=True)
        save("convert", res)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["plain", "convert", "score", "table"])
    ap.add_argument("--redo", action="store_true")
    ap.add_argument("--only", nargs="*", default=[])
    a = ap.parse_args()
    if a.step == "plain":
        step_plain(a.redo)
    elif a.step == "convert":
        step_convert(a.redo, a.only)
    elif a.step == "score":
        import score
        score.main(CACHE)
    else:
        import table
        table.main(CACHE)


if __name__ == "__main__":
    main()
