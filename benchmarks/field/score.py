"""Score every artifact of every field bundle against the ORIGINAL model on held-out data (issue 14).

Runs inside the host venv (spinal's own loader: each artifact with its logical tensors, as a device runs it) and
onnxruntime on the original file. Measures per spec.py: det_iou (IoU of the probability maps thresholded at 0.3,
rapidocr's `thresh`), ctc_agree (the CTC-decoded class sequences equal), top1_agree, wake_agree / vad_agree
(detections at the package's threshold 0.5 agree; recall of the original's detections), cosine (mean, min).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from spec import SPEC


def ctc(seq: np.ndarray) -> tuple[int, ...]:
    idx = seq.argmax(-1)
    out, prev = [], -1
    for i in idx:
        if i != prev and i != 0:
            out.append(int(i))
        prev = i
    return tuple(out)


def measure(kind: str, ref: list[np.ndarray], got: list[np.ndarray], labels: np.ndarray | None) -> dict:
    r = {}
    cos = [float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
           for a, b in zip(ref, got, strict=False)]
    r["cos_mean"], r["cos_min"] = round(float(np.mean(cos)), 5), round(float(np.min(cos)), 5)
    r["max_abs"] = round(float(max(np.abs(a - b).max() for a, b in zip(ref, got, strict=False))), 5)
    if kind == "det_iou":
        ious = []
        for a, b in zip(ref, got, strict=False):
            ma, mb = a > 0.3, b > 0.3
            u = np.logical_or(ma, mb).sum()
            ious.append(1.0 if u == 0 else np.logical_and(ma, mb).sum() / u)
        r["iou_mean"], r["iou_min"] = round(float(np.mean(ious)), 4), round(float(np.min(ious)), 4)
        r["main"] = f"IoU {r['iou_mean']:.3f}"
    elif kind == "ctc_agree":
        same = [ctc(a.reshape(-1, a.shape[-1])) == ctc(b.reshape(-1, b.shape[-1]))
                for a, b in zip(ref, got, strict=False)]
        r["text_agree"] = round(100 * float(np.mean(same)), 1)
        r["main"] = f"text {r['text_agree']:.1f}%"
    elif kind == "top1_agree":
        ta = [int(a.ravel().argmax()) for a in ref]
        tb = [int(b.ravel().argmax()) for b in got]
        r["top1_agree"] = round(100 * float(np.mean(np.equal(ta, tb))), 1)
        if labels is not None:
            r["acc_orig"] = round(100 * float(np.mean(np.equal(ta, labels))), 1)
            r["acc"] = round(100 * float(np.mean(np.equal(tb, labels))), 1)
        r["main"] = f"top1 {r['top1_agree']:.1f}%"
    elif kind in ("wake_agree", "vad_agree"):
        sa = np.array([float(a.ravel()[0]) for a in ref])
        sb = np.array([float(b.ravel()[0]) for b in got])
        da, db = sa >= 0.5, sb >= 0.5
        r["det_orig"], r["det_art"] = int(da.sum()), int(db.sum())
        r["det_agree"] = round(100 * float(np.mean(da == db)), 1)
        r["recall"] = round(100 * float((da & db).sum() / max(1, da.sum())), 1)
        r["extra"] = int((db & ~da).sum())
        r["main"] = f"det {r['det_art']}/{r['det_orig']} agree {r['det_agree']:.0f}%"
    else:
        r["main"] = f"cos {r['cos_mean']:.4f}"
    return r


def score_bundle(original: Path, bundle: Path, val: Path, kind: str) -> dict:
    import onnxruntime as ort

    from device.bundle import open_bundle
    from device.runtime.base import RuntimePolicy
    from device.runtime.select import load_model

    data = dict(np.load(val))
    labels = data.pop("labels", None)
    n = len(next(iter(data.values())))
    out: dict[str, dict] = {}
    ref_sess = None
    if original.suffix == ".onnx":
        ref_sess = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    with open_bundle(bundle) as b:
        m = b.manifest
        in_names = [t.name for t in m.inputs]
        ref: list[np.ndarray] = []
        feeds = []
        for i in range(n):
            feed = {}
            for j, t in enumerate(m.inputs):
                arr = list(data.values())[j] if t.name not in data else data[t.name]
                feed[t.name] = np.asarray(arr[i]).reshape(t.shape)
            feeds.append(feed)
        if ref_sess is not None:
            onames = [x.name for x in ref_sess.get_inputs()]
            for feed in feeds:
                f = {o: feed[k].astype(np.int64 if "int64" in ri.type else np.float32)
                     for o, k, ri in zip(onames, in_names, ref_sess.get_inputs(), strict=False)}
                ref.append(np.asarray(ref_sess.run(None, f)[0], np.float32))
        for art in m.artifacts:
            rt = "onnxruntime" if art.path.endswith(".onnx") else "litert"
            key = art.path
            try:
                model = load_model(b, RuntimePolicy(runtime=rt, artifact=art.path, threads=1))
                got = []
                with model:
                    for feed in feeds:
                        y = model.run(feed)
                        got.append(np.asarray(y[m.outputs[0].name], np.float32))
                if not ref:  # a file bundled as it is: score it against its own fp32 run
                    out[key] = {"main": "n/a (as-is)"}
                    continue
                out[key] = measure(kind, ref, got, labels)
            except Exception as e:
                out[key] = {"main": "ERROR", "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            print(f"  {bundle.name} {key}: {out[key]['main']}", flush=True)
    return out


def main(cache: Path, conv_name: str = "convert", score_name: str = "score") -> None:
    if not (cache / "results" / f"{conv_name}.json").exists():
        return
    conv = json.loads((cache / "results" / f"{conv_name}.json").read_text())
    files = {p.name: p for p in (cache / "models").rglob("*") if p.suffix in (".onnx", ".tflite")}
    resp = cache / "results" / f"{score_name}.json"
    res = json.loads(resp.read_text()) if resp.exists() else {}
    for name, r in conv.items():
        if not r.get("bundle") or name not in SPEC:
            continue
        if name in res and res[name].get("_bundle_mtime") == Path(r["bundle"]).stat().st_mtime:
            continue
        val = cache / "data" / Path(name).stem / "val.npz"
        print(name, flush=True)
        s = score_bundle(files[name], Path(r["bundle"]), val, SPEC[name]["measure"])
        s["_bundle_mtime"] = Path(r["bundle"]).stat().st_mtime
        res[name] = s
        resp.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(Path.home() / ".cache" / "spinal" / "field")
