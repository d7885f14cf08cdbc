"""Converter benchmark: a CNN trained on scikit-learn's digits through ``spinal convert``.

Reports, per artifact: top-1 accuracy on the held-out digits, drop against fp32, bytes and the
ratio to the fp32 file of the same format, and the conversion wall time. With ``--bundles``, the
same table is printed for existing bundles (e.g. the reference models in ``models/``) from their
``report.json``.

    python benchmarks/bench_convert.py [--epochs 40] [--width 1 2] [--bundles models/*/*.spinal]

``--width`` multiplies the CNN's channels (1: 21k parameters, 2: 80k): an int8 file carries a fixed
overhead (graph, names, int32 biases, scales) besides its int8 weights, so its ratio to fp32 falls
towards 25% as the model grows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def train_cnn(epochs: int, width: int = 1):
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 32 * width, 3, padding=1)
            self.c2 = torch.nn.Conv2d(32 * width, 64 * width, 3, padding=1)
            self.fc = torch.nn.Linear(64 * width * 2 * 2, 10)

        def forward(self, t):
            t = torch.nn.functional.max_pool2d(torch.relu(self.c1(t)), 2)
            t = torch.nn.functional.max_pool2d(torch.relu(self.c2(t)), 2)
            return self.fc(t.flatten(1))

    model = CNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400])
    for _ in range(epochs):
        perm = torch.randperm(1400)
        for i in range(0, 1400, 100):
            idx = perm[i:i + 100]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    params = sum(p.numel() for p in model.parameters())
    return model.eval(), x, y, params


def table(name: str, report: dict, seconds: float | None, params: int | None) -> list[str]:
    arts = report["artifacts"]
    fp32_bytes = {a["format"]: a["bytes"] for a in arts.values() if a["precision"] == "fp32"}
    lines = [f"### {name}" + (f" ({params:,} parameters)" if params else ""), ""]
    if seconds is not None:
        lines.append(f"conversion wall time: {seconds:.1f} s (all six artifacts, gate and golden vectors included)")
        lines.append("")
    metric = next((m for m in ("accuracy", "mae") if any(m in a for a in arts.values())), "cosine")
    drop = {"accuracy": "top-1 points", "mae": "% of fp32 MAE", "cosine": "100×(1−cos)"}[metric]
    lines += [f"| artifact | {metric} | cosine vs fp32 | drop ({drop}) | bytes | bytes / fp32 | latency here µs |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for path, a in arts.items():
        value = {"accuracy": f"{a.get(metric, float('nan')):.2f}%", "mae": f"{a.get(metric, float('nan')):.4g}",
                 "cosine": f"{a.get(metric, float('nan')):.6f}"}[metric]
        value += f" | {a.get('cosine', float('nan')):.6f}"
        ratio = a["bytes"] / fp32_bytes[a["format"]] if a["format"] in fp32_bytes else float("nan")
        lines.append(f"| {path} | {value} | {a['drop']:+.2f} | {a['bytes']:,} | {ratio:.0%} | "
                     f"{a.get('latency_us', float('nan')):.0f} |")
    for path, a in report.get("rejected", {}).items():
        lines.append(f"| {path} (rejected) | | | {a['drop']:+.2f} | {a['bytes']:,} | | |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--width", type=int, nargs="*", default=[1], help="channel multipliers to convert")
    parser.add_argument("--bundles", nargs="*", default=[])
    args = parser.parse_args()
    out_lines: list[str] = []
    for width in args.width:
        out_lines += convert_digits(args.epochs, width)
    for bundle in args.bundles:
        from device.bundle import open_bundle

        with open_bundle(bundle) as b:
            report = json.loads((b.root / "report.json").read_text()) if (b.root / "report.json").exists() \
                else b.manifest.report
            out_lines += table(f"{b.manifest.name} ({bundle})", report, report.get("conversion_seconds"), None)
    print("\n".join(out_lines))


def convert_digits(epochs: int, width: int) -> list[str]:
    """Train the digits CNN at ``width``, convert it to every artifact, and tabulate the report."""
    from toolchain.convert import ConvertOptions, convert

    model, x, y, params = train_cnn(epochs, width)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        torch_path = tmpdir / "digits.pt"
        import torch

        torch.jit.trace(model, torch.from_numpy(x[:1])).save(str(torch_path))  # a TorchScript file
        np.savez(tmpdir / "cal.npz", input=x[:300])
        np.savez(tmpdir / "val.npz", input=x[1400:], labels=y[1400:])
        t0 = time.perf_counter()
        result = convert(ConvertOptions.build(model=str(torch_path), out=tmpdir / "digits",
                                              input_shapes={"": (1, 1, 8, 8)},
                                              calibration=tmpdir / "cal.npz", validation=tmpdir / "val.npz",
                                              layout="NCHW"))
        seconds = time.perf_counter() - t0
        return table(f"digits CNN, width {width} (torch, trained here)", result.report, seconds, params)


if __name__ == "__main__":
    main()
