"""`spinal convert` against the bare tools it wraps, for the same six artifacts, in one run.

The bare-tools anchor is what a user would script by hand for the same files: copy the fp32 ONNX, onnxruntime's
``quantize_static`` (QDQ, per-channel, the same calibration), onnx2tf to a SavedModel, and TensorFlow's
``TFLiteConverter`` for fp32, fp16, int8 and int8 with int8 I/O. Spinal adds the accuracy gate, golden
vectors, the parity bounds, latency and the bundle. Each side runs as a fresh process (imports count on both
sides), in interleaved rounds; the table gives medians of wall time and of the peak resident memory of the
whole process tree (sampled from /proc every 20 ms).

    python benchmarks/bench_convert_tools.py [--rounds 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import train_cnn

BARE = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    import numpy as np
    src, cal, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    x = np.load(cal)["input"].astype(np.float32)
    shutil.copy(src, out / "model.fp32.onnx")
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    class Reader(CalibrationDataReader):
        def __init__(self): self.rows = iter(x[i:i + 1] for i in range(len(x)))
        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"input": row}
    quant_pre_process(str(src), str(out / "pre.onnx"))
    quantize_static(str(out / "pre.onnx"), str(out / "model.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    import onnx2tf
    onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(out / "sm"),
                    keep_shape_absolutely_input_names=["input"], non_verbose=True)
    import tensorflow as tf
    def rep():
        for i in range(len(x)):
            yield [x[i:i + 1]]
    for name in ("fp32", "fp16", "int8", "int8-io"):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(out / "sm"))
        if name == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif name.startswith("int8"):
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if name == "int8-io":
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        (out / f"model.{name}.tflite").write_bytes(conv.convert())
""")


def tree_rss_kib(pid: int) -> int:
    """Resident memory (KiB) of ``pid`` and every descendant, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
        rss[int(entry.name)] = int(line.split()[1])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def measure(command: list[str]) -> tuple[float, float, float]:
    """Run ``command``; return (wall seconds, CPU seconds of the whole tree, peak tree RSS in MiB).

    CPU time (user + system of the child and every descendant it waited for) is the steadier measure on a
    shared machine, where wall time grows with the load. Fails loudly if the command fails.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} … failed (exit {proc.returncode}):\n{proc.stderr.read()[-2000:]}")
    return wall, cpu, peak / 1024


def export(tmp: Path, epochs: int) -> tuple[Path, Path, Path]:
    """The digits CNN as ONNX (input named ``input``), calibration and validation files."""
    import torch

    model, x, y, _ = train_cnn(epochs, 1)
    onnx_path = tmp / "digits.onnx"
    torch.onnx.export(model, torch.from_numpy(x[:1]), str(onnx_path), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    np.savez(tmp / "cal.npz", input=x[:200])
    np.savez(tmp / "val.npz", input=x[1400:], labels=y[1400:])
    return onnx_path, tmp / "cal.npz", tmp / "val.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    spinal = str(Path(sys.executable).with_name("spinal"))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        onnx_path, cal, val = export(tmp, args.epochs)
        bare_script = tmp / "bare.py"
        bare_script.write_text(BARE)
        sides = {
            "bare tools": lambda r: [sys.executable, str(bare_script), str(onnx_path), str(cal), str(tmp / f"b{r}")],
            "spinal convert": lambda r: [spinal, "convert", str(onnx_path), "--calibration", str(cal),
                                         "--validation", str(val), "-o", str(tmp / f"s{r}"), "--layout", "NCHW"],
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for name, command in sides.items():
                wall, cpu, mem = measure(command(r))
                results[name].append((wall, cpu, mem))
                print(f"round {r + 1}/{args.rounds} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, {mem:.0f} MiB",
                      file=sys.stderr)
    med = {n: tuple(statistics.median(row[i] for row in v) for i in range(3)) for n, v in results.items()}
    base = med["bare tools"]
    print(f"medians of {args.rounds} interleaved rounds")
    print("| side | wall s | ratio | CPU s | ratio | peak RSS MiB | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (wall, cpu, mem) in med.items():
        print(f"| {name} | {wall:.1f} | {wall / base[0]:.2f}x | {cpu:.1f} | {cpu / base[1]:.2f}x | {mem:.0f} | "
              f"{mem / base[2]:.2f}x |")


if __name__ == "__main__":
    main()
