"""The TFLite backend, decided by measurement (issue 14): onnx2tf's TensorFlow path vs its flatbuffer_direct backend.

Run once per venv, same models, same data, same settings:

    .venv/bin/python benchmarks/field/backend.py --label tf          # onnx2tf 1.29 + TensorFlow 2.19 (today's path)
    VENV312/bin/python benchmarks/field/backend.py --label direct    # onnx2tf >= 2.4, tflite_backend=flatbuffer_direct

Per model: the input shapes fixed as the package uses them and names made safe (in0.., out0..: the naming bugs
are a separate class), then ONE onnx2tf.convert() call in a child process writing fp32, fp16 and int8
(integer_quant: int8 weights and activations, float I/O; calibration: the field data) files; wall time and peak RSS
of that child; each file run in LiteRT on the held-out data and scored against the ORIGINAL ONNX model (score.py).
Results: CACHE/results/backend-<label>.json; `--table` prints both side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from spec import SPEC

CACHE = Path(os.environ.get("FIELD_CACHE", Path.home() / ".cache" / "spinal" / "field"))
MODELS = ["alexa_v0.1.onnx", "hey_jarvis_v0.1.onnx", "hey_mycroft_v0.1.onnx", "embedding_model.onnx",
          "melspectrogram.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx", "silero_vad.onnx"]


def prepare(src: Path, work: Path) -> tuple[Path, list[str]]:
    import onnx
    m = onnx.load(str(src))
    shapes = SPEC.get(src.name, {}).get("shapes", {})
    inits = {i.name for i in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    ren = {}
    for k, i in enumerate(ins):
        if i.name in shapes:
            for d, v in zip(i.type.tensor_type.shape.dim, shapes[i.name], strict=False):
                d.ClearField("dim_param")
                d.dim_value = v
        ren[i.name] = f"in{k}"
    for k, o in enumerate(m.graph.output):
        ren[o.name] = f"out{k}"

    def walk(g):
        for n in g.node:
            n.input[:] = [ren.get(x, x) for x in n.input]
            n.output[:] = [ren.get(x, x) for x in n.output]
            for a in n.attribute:
                if a.g is not None and a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(m.graph)
    new_in = [ren[i.name] for i in ins]
    for v in list(m.graph.input) + list(m.graph.output):
        v.name = ren.get(v.name, v.name)
    # the fixed sizes reach every value: let onnx infer them again
    del m.graph.value_info[:]
    p = work / "model.onnx"
    onnx.save(m, str(p))
    return p, new_in


def child(model: Path, work: Path, names: list[str], calib: list[Path], backend: str) -> None:
    import onnx2tf
    kw = dict(input_onnx_file_path=str(model), output_folder_path=str(work / "out"),
              keep_shape_absolutely_input_names=names, copy_onnx_input_output_names_to_tflite=True,
              output_integer_quantized_tflite=True, non_verbose=True,
              custom_input_op_name_np_data_path=[[n, str(p), 0.0, 1.0] for n, p in zip(names, calib, strict=False)])
    if backend == "direct":
        kw["tflite_backend"] = "flatbuffer_direct"
    onnx2tf.convert(**kw)


def run_tflite(path: Path, feeds: list[dict[str, np.ndarray]], ref_shape: tuple) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins = it.get_input_details()
    out = it.get_output_details()
    # outputs: the one named out0, else the first
    od = next((o for o in out if o["name"].endswith("out0")), out[0])
    res = []
    for f in feeds:
        for d in ins:
            key = next(k for k in f if d["name"].endswith(k) or k in d["name"])
            x = f[key]
            if tuple(d["shape"]) != x.shape and x.size == int(np.prod(d["shape"])):
                if x.ndim == 4 and tuple(d["shape"]) == (x.shape[0], x.shape[2], x.shape[3], x.shape[1]):
                    x = x.transpose(0, 2, 3, 1)
                else:
                    x = x.reshape(d["shape"])
            if d["dtype"] in (np.int8, np.uint8):
                s, z = d["quantization"]
                x = np.clip(np.round(x / s + z), -128, 127).astype(d["dtype"])
            it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        y = it.get_tensor(od["index"])
        if od["dtype"] in (np.int8, np.uint8):
            s, z = od["quantization"]
            y = (y.astype(np.float32) - z) * s
        y = np.asarray(y, np.float32)
        if y.shape != ref_shape and y.ndim == 4 and ref_shape == (y.shape[0], y.shape[3], y.shape[1], y.shape[2]):
            y = y.transpose(0, 3, 1, 2)
        res.append(y.reshape(ref_shape))
    return res


def root_error(stderr: str) -> str:
    """The first exception line of the traceback chain (the cause), and the last one."""
    errs = [ln.strip() for ln in stderr.splitlines() if re.match(r"^\w*(Error|Exception)\b.*:", ln.strip())]
    if not errs:
        return (stderr.strip().splitlines() or [""])[-1][:300]
    return (errs[0] if errs[0] == errs[-1] else f"{errs[0][:200]} -> {errs[-1][:100]}")[:320]


def isolated(f: Path, feeds: list, ref: list, kind: str, labels) -> dict:
    """Score one file in a forked child: a runtime that crashes on a file takes only the child down."""
    import multiprocessing as mp

    from score import measure
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def work() -> None:
        try:
            got = run_tflite(f, feeds, ref[0].shape)
            q.put(measure(kind, ref, got, labels[:len(got)] if labels is not None else None))
        except Exception as e:
            q.put({"main": "ERROR", "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"})
    p = ctx.Process(target=work)
    p.start()
    p.join(600)
    if p.exitcode != 0:
        p.kill()
        return {"main": "CRASH", "error": f"LiteRT died running it (exit {p.exitcode})"}
    return q.get(timeout=5)


def one(name: str, label: str, backend: str) -> dict:
    import onnxruntime as ort
    src = next((CACHE / "models").rglob(name))
    work = CACHE / "backend" / label / Path(name).stem
    subprocess.run(["rm", "-rf", str(work)])
    work.mkdir(parents=True)
    model, names = prepare(src, work)
    cal = dict(np.load(CACHE / "data" / Path(name).stem / "calib.npz"))
    val = dict(np.load(CACHE / "data" / Path(name).stem / "val.npz"))
    cal.pop("labels", None)
    labels = val.pop("labels", None)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    oin = sess.get_inputs()
    calib = []
    for _k, (n, i) in enumerate(zip(names, oin, strict=False)):
        arr = cal[i.name][:64].astype(np.float32)
        shape = SPEC.get(name, {}).get("shapes", {}).get(i.name) or [d if isinstance(d, int) else 1 for d in i.shape]
        arr = arr.reshape((len(arr), *shape[1:])) if len(shape) and shape[0] == 1 else arr.reshape((len(arr), *shape))
        if arr.ndim == 4:
            arr = arr.transpose(0, 2, 3, 1)  # onnx2tf wants calibration data in its TF (NHWC) order
        p = work / f"calib_{n}.npy"
        np.save(p, arr)
        calib.append(p)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, __file__, "--child", str(model), str(work), ",".join(names),
                        ",".join(map(str, calib)), backend], capture_output=True, text=True, timeout=1800)
    secs = time.monotonic() - t0
    rss = None
    for ln in p.stdout.splitlines():
        if ln.startswith("PEAK_RSS_MB "):
            rss = float(ln.split()[1])
    r = {"model": name, "rc": p.returncode, "seconds": round(secs, 1), "peak_rss_mb": rss,
         "error": root_error(p.stderr) if p.returncode else ""}
    n = len(next(iter(val.values())))
    feeds, ref = [], []
    for j in range(min(n, 64)):
        f = {}
        for _k, (nm, i) in enumerate(zip(names, oin, strict=False)):
            shape = (SPEC.get(name, {}).get("shapes", {}).get(i.name)
                     or [d if isinstance(d, int) else 1 for d in i.shape])
            f[nm] = np.asarray(val[i.name][j]).reshape(shape).astype(np.int64 if "int64" in i.type else np.float32)
        feeds.append(f)
        feed = {i.name: f[nm] for nm, i in zip(names, oin, strict=False)}
        ref.append(np.asarray(sess.run(None, feed)[0], np.float32))
    kind = SPEC.get(name, {}).get("measure", "cosine")
    files = sorted((work / "out").glob("*.tflite")) if (work / "out").exists() else []
    r["files"] = {}
    for f in files:
        tag = f.stem.replace("model_", "")
        if tag not in ("float32", "float16", "integer_quant", "full_integer_quant"):
            continue
        s = isolated(f, feeds, ref, kind, labels)
        s["bytes"] = f.stat().st_size
        r["files"][tag] = s
    print(label, name, r["rc"], r["seconds"], r["peak_rss_mb"], {k: v["main"] for k, v in r["files"].items()},
          r["error"], flush=True)
    return r


def table() -> None:
    res = {lab: json.loads((CACHE / "results" / f"backend-{lab}.json").read_text()) for lab in ("tf", "direct")
           if (CACHE / "results" / f"backend-{lab}.json").exists()}
    print("| model | backend | s | peak MB | fp32 | fp16 | int8 |")
    print("|---|---|---|---|---|---|---|")
    for name in MODELS:
        for lab, rr in res.items():
            r = rr.get(name)
            if not r:
                continue
            cells = []
            for tag in ("float32", "float16", "integer_quant"):
                s = r["files"].get(tag)
                cells.append("-" if s is None else s["main"] if "error" not in s else "run error")
            err = f" ({r['error'][:60]})" if r["rc"] and not r["files"] else ""
            print(f"| {name} | {lab} | {r['seconds']:.0f} | {r['peak_rss_mb'] or 0:.0f} | "
                  + " | ".join(cells) + f" |{err}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model, work, names, calib, backend = sys.argv
        try:
            child(Path(model), Path(work), names.split(","), [Path(p) for p in calib.split(",")], backend)
        finally:
            peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
            print(f"PEAK_RSS_MB {peak:.0f}", flush=True)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", choices=["tf", "direct"])
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.table:
        table()
        return
    out = CACHE / "results" / f"backend-{a.label}.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    for m in a.models:
        try:
            res[m] = one(m, a.label, a.label)
        except Exception as e:
            res[m] = {"model": m, "rc": -1, "seconds": 0, "peak_rss_mb": None, "files": {},
                      "error": f"{type(e).__name__}: {e}"[:300]}
            print(a.label, m, "ERROR", res[m]["error"], flush=True)
        out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
