"""The field benchmark's markdown tables and summary numbers from CACHE/results/*.json (issue 14)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from spec import SPEC

# An int8 artifact is "usable" when the task measure against the ORIGINAL model reaches this.
USABLE = {"det_iou": ("iou_mean", 0.90), "ctc_agree": ("text_agree", 95.0), "top1_agree": ("top1_agree", 98.0),
          "wake_agree": ("det_agree", 97.0), "vad_agree": ("det_agree", 97.0), "cosine": ("cos_mean", 0.99)}
def is_usable(measure: str, sc: dict) -> bool:
    """The task measure against the original reaches USABLE (wake word / VAD: and keeps 90 % of its detections)."""
    key, lim = USABLE.get(measure, ("cos_mean", 0.99))
    if key not in sc or sc[key] < lim:
        return False
    return not sc.get("det_orig") or sc.get("recall", 0) >= 90.0


CUSTOM_OP = re.compile(r"unresolved custom op: (\w+)")


def short(s: str, n: int = 90) -> str:
    s = " ".join(str(s).split()).replace("|", "/").replace(str(Path.home()), "~")
    return s if len(s) <= n else s[: n - 1] + "…"


def first_fail(out: str) -> str:
    """The first FAIL/error statement of a spinal command's output, unwrapped, paths shortened."""
    parts = []
    for ln in out.splitlines():  # rich wraps at 80 columns: a full line that cut a path goes on without a space
        parts.append(ln.rstrip() + ("" if len(ln.rstrip()) >= 80 else " "))
    text = " ".join("".join(parts).split())
    m = re.search(r"(FAIL .*?|error: .*?)(?= ok |$| FAIL |\S+: FAILED)", text)
    s = m.group(1) if m else text[-200:]
    s = re.sub(r"/\S*/(\S+\.(tflite|onnx))", r"\1", s)
    return s


def reason(v) -> str:
    if isinstance(v, dict):
        for k in ("reason", "error", "message", "why"):
            if k in v:
                extra = f" [vs fp32: cos {v['cosine']:.3f}" if isinstance(v.get("cosine"), float) else ""
                if extra and isinstance(v.get("agreement"), (int, float)):
                    extra += f", decisions {v['agreement']:.1f} %"
                return str(v[k]).split(" (largest of")[0] + (extra + "]" if extra else "")
        return json.dumps(v)[:200]
    return str(v)


def plain_pass(r: dict) -> tuple[bool, bool, str]:
    """(strict: every check exit 0, counted: strict or a genuine custom op refused in one line, note)"""
    rcs = [r[k]["rc"] for k in ("inspect", "bench", "verify")]
    strict = all(rc == 0 for rc in rcs)
    if strict:
        return True, True, ""
    out = r["verify"]["out"] + r["bench"]["out"]
    ops = sorted(set(CUSTOM_OP.findall(out)))
    ok_pref = re.search(r"ok\s+runs on (litert|onnxruntime)", r["verify"]["out"]) is not None
    if ops and not ok_pref and r["inspect"]["rc"] == 0:
        return False, True, f"custom op {','.join(ops)} refused in one line"
    failing = [k for k in ("inspect", "bench", "verify") if r[k]["rc"]]
    line = " ".join(r["verify"]["out"].split())
    m = re.search(r"FAIL runs on ([\w-]+): .*?(crashed[^;]*|cannot prepare it \([^)]*\)|failed[^;]*)", line)
    note = f"{','.join(failing)}: {m.group(1)} {m.group(2)}" if m else f"{','.join(failing)}: {r[failing[0]]['line']}"
    if ok_pref:
        note += " (LiteRT/ORT ok)"
    return False, False, note


def tag(art: str, v) -> str:
    """A short name for why an artifact is missing."""
    r = reason(v)
    if "outer-scope" in r:
        return "If: outer-scope input (onnx2tf)"
    if "no operator onnxruntime can quantize" in r:
        return "all ops inside If: nothing to quantize"
    if "control-flow" in r:
        return "If (onnx2tf IndexError)"
    if "Erf" in r:
        return "Erf: TF converter MLIR error"
    m = re.match(r"drop ([\d.]+) > max", r)
    if m:
        return f"gate: drop {float(m.group(1)):.1f}"
    return short(r, 40)


def compact(rows: list[dict], plain: dict, conv: dict, score: dict, ug: dict, ugs: dict) -> None:
    """One row per ONNX model, short columns."""
    print("| model | ship | int8 vs original | fp32 / fp16 | not shipped: why | s |")
    print("|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: (r["package"], r["path"])):
        name = Path(row["path"]).name
        c = conv.get(name)
        if row["format"] != "onnx" or not c:
            continue
        rep = c.get("report") or {}
        sc = score.get(name, {})
        arts = rep.get("artifacts") or {}
        int8 = [(a, sc.get(a, {}).get("main", "-")) for a, i in arts.items()
                if i.get("precision", "").startswith("int8")]
        i8 = "; ".join(f"{'onnx' if a.endswith('onnx') else 'tfl'} {m}" for a, m in int8[:2]) or "-"
        if not int8 and name in ug:
            u = [ugs.get(name, {}).get(a, {}).get("main") for a in (ug[name].get("report") or {}).get("artifacts", {})]
            u = [x for x in u if x]
            if u:
                i8 = "refused; ungated: " + " / ".join(u)
        fl = [sc.get(a, {}).get("main", "-") for a, i in arts.items() if i.get("precision") in ("fp32", "fp16")]
        fl = " / ".join(sorted(set(fl))) or "-"
        why: dict[str, list[str]] = {}
        for kind in ("rejected", "failed"):
            for a, v in (rep.get(kind) or {}).items():
                why.setdefault(tag(a, v), []).append(
                    ("onnx-" if a.endswith(".onnx") else "tfl-") + a.split(".")[1])
        w = "; ".join(f"{','.join(sorted(set(v)))}: {k}" for k, v in why.items()) or "-"
        w = w.replace("tfl-fp16,tfl-fp32,tfl-int8,tfl-int8-io", "all TFLite")
        secs = rep.get("conversion_seconds", c["seconds"])
        def tidy(t: str) -> str:
            return re.sub(r"det (\d+)/(\d+) agree (\d+)%", r"\3% (\1/\2)", t)
        print(f"| {name.replace('.onnx', '')} | {len(arts)}/6 | {tidy(i8)} | {tidy(fl)} | {w} | {secs:.0f} |")


def main(cache: Path) -> None:
    res = cache / "results"
    corpus = json.loads((Path(__file__).with_name("corpus.json")).read_text())
    rows = [r for r in corpus if "duplicate_of" not in r]
    plain = json.loads((res / "plain.json").read_text())
    conv = json.loads((res / "convert.json").read_text()) if (res / "convert.json").exists() else {}
    score = json.loads((res / "score.json").read_text()) if (res / "score.json").exists() else {}

    print("### Plain files: `spinal inspect`, `bench --seconds 0.2`, `verify`\n")
    print("Sizes of dynamic axes given with `--input-shape` as the package uses them (spec.py); `dflt`: verify")
    print("without them. i/b/v: exit codes.\n")
    print("| file | pkg | i/b/v | dflt | note |")
    print("|---|---|---|---|---|")
    n_strict = n_count = 0
    for row in rows:
        name = Path(row["path"]).name
        r = plain.get(name)
        if not r:
            continue
        strict, counted, note = plain_pass(r)
        n_strict += strict
        n_count += counted
        d = r.get("verify_default", {}).get("rc", "")
        ibv = "/".join(str(r[k]["rc"]) for k in ("inspect", "bench", "verify"))
        print(f"| {name} | {row['package'].split('-')[0]} {row['version']} | {ibv} | {d} | {short(note, 80)} |")
    total = len([r for r in rows if Path(r["path"]).name in plain])
    print(f"\n**Plain files passing inspect + bench + verify: {n_count}/{total} = {100 * n_count / total:.0f} %** "
          f"(counting a genuine custom op refused in one line; strictly every exit 0: {n_strict}/{total} = "
          f"{100 * n_strict / total:.0f} %).\n")

    ug = json.loads((res / "convert-ungated.json").read_text()) if (res / "convert-ungated.json").exists() else {}
    ugs = json.loads((res / "score-ungated.json").read_text()) if (res / "score-ungated.json").exists() else {}
    print("### ONNX models: `spinal convert` with package-made data, scored against the original\n")
    compact(rows, plain, conv, score, ug, ugs)
    print("\n<details><summary>Every artifact</summary>\n")
    print("### Conversions: `spinal convert` with package-made data, artifacts scored against the original\n")
    print("One row per artifact. `gate`: shipped or the one-line reason it was not; `measure`: held-out data, the")
    print("artifact against the ORIGINAL model (det: IoU of maps > 0.3; rec: CTC text equal; cls/timer: top-1")
    print("equal; wake/VAD: detections at 0.5 equal, `a/o` = detections artifact/original; others: cosine).\n")
    print("| model | artifact | gate | measure | s |")
    print("|---|---|---|---|---|")
    onnx_models = usable_n = 0
    tfl_asis = tfl_ok = 0
    for row in sorted(rows, key=lambda r: (r["format"], r["package"], r["path"])):
        name = Path(row["path"]).name
        c = conv.get(name)
        if c is None:
            continue
        rep = c.get("report") or {}
        sc = score.get(name, {})
        secs = rep.get("conversion_seconds", c["seconds"])
        vrc = c.get("verify", {}).get("rc")
        if row["format"] == "tflite":
            tfl_asis += 1
            ok = c["rc"] == 0 and vrc == 0
            tfl_ok += ok
            arts = ", ".join(rep.get("artifacts", {})) or "-"
            line = "as-is, verify ok" if ok else short(first_fail(c["out"] if c["rc"] else c["verify"]["out"]), 110)
            print(f"| {name} | {arts} | {line} | - | {secs:.0f} |")
            continue
        onnx_models += 1
        spec = SPEC.get(name, {})
        usable = []
        if not rep:
            print(f"| {name} | all | exit {c['rc']}: {short(first_fail(c['out']), 110)} | - | {c['seconds']:.0f} |")
        for art, info in (rep.get("artifacts") or {}).items():
            s = sc.get(art, {})
            meas = s.get("main", "-") if "error" not in s else short(s["error"], 60)
            if s.get("det_orig") is not None:
                meas += f" ({s['det_art']}/{s['det_orig']})"
            if "acc" in s:
                meas += f" acc {s['acc']:.0f}/{s['acc_orig']:.0f}"
            good = is_usable(spec.get("measure", "cosine"), s)
            if info.get("precision", "").startswith("int8") and good:
                usable.append(art)
            drop = info.get("drop")
            g = f"shipped (drop {drop:.2f})" if isinstance(drop, (int, float)) else "shipped"
            print(f"| {name} | {art} | {g} | {meas} | {secs:.0f} |")
        for kind in ("rejected", "failed"):
            for art, v in (rep.get(kind) or {}).items():
                print(f"| {name} | {art} | {kind}: {short(reason(v), 80)} | - | |")
        if c.get("verify") and c["verify"]["rc"] != 0:
            why = short(first_fail(c["verify"]["out"]), 110)
            print(f"| {name} | bundle | verify exit {c['verify']['rc']}: {why} | - | |")
        usable_n += bool(usable)
    if onnx_models:
        print(f"\n**Real ONNX models with a usable gated int8 artifact: {usable_n}/{onnx_models} = "
              f"{100 * usable_n / onnx_models:.0f} %** (shipped by the gate and, against the original on held-out "
              "data: IoU ≥ 0.90, text ≥ 95 %, top-1 ≥ 98 %, detections ≥ 97 % equal and ≥ 90 % of the original's "
              "kept, cosine ≥ 0.99).")
    print("\n</details>")
    if ug:
        print("\n### The int8 artifacts the gate refused, made anyway and scored against the original\n")
        print("`spinal convert … --max-drop 1000 --no-remedies --formats onnx-int8,tflite-int8` (first settings, no")
        print("search), same data: was the refusal right for the task?\n")
        print("| model | artifact | drop | measure | usable |")
        print("|---|---|---|---|---|")
        for name, c in ug.items():
            rep = c.get("report") or {}
            _key, _lim = USABLE.get(SPEC.get(name, {}).get("measure", "cosine"), ("cos_mean", 0.99))
            if not rep:
                print(f"| {name} | - | exit {c['rc']}: {short(first_fail(c['out']), 80)} | - | - |")
            for art, info in (rep.get("artifacts") or {}).items():
                sc = ugs.get(name, {}).get(art, {})
                meas = sc.get("main", "-")
                if sc.get("det_orig") is not None:
                    meas += f" ({sc['det_art']}/{sc['det_orig']})"
                good = is_usable(SPEC.get(name, {}).get("measure", "cosine"), sc)
                print(f"| {name} | {art} | {info.get('drop', 0):.2f} | {meas} | {'yes' if good else 'no'} |")
    if tfl_asis:
        print(f"\n**TFLite files bundled as they are (`spinal convert x.tflite`) and verified: {tfl_ok}/{tfl_asis}.**")


if __name__ == "__main__":
    main(Path.home() / ".cache" / "spinal" / "field")
