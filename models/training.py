"""Reproducible training and ONNX export for the reference models (torch imported lazily)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 1  # one thread: identical results on every run of this machine, and polite to the neighbours


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch; make torch deterministic and single-threaded."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def train(model: Any, x: np.ndarray, y: np.ndarray, loss_fn: Callable[[Any, Any], Any], *, epochs: int,
          batch_size: int, lr: float, seed: int, weight_decay: float = 0.0,
          log: Callable[[str], None] | None = None) -> list[float]:
    """Full-batch-shuffled Adam training with a cosine learning-rate schedule; returns epoch losses."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        history.append(total / len(xt))
        if log and (epoch % max(1, epochs // 10) == 0 or epoch == epochs - 1):
            log(f"  epoch {epoch + 1:3d}/{epochs}  loss {history[-1]:.4f}")
    model.eval()
    return history


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The fp32 torch model's outputs for ``x`` (eval mode, no grad)."""
    import torch

    model.eval()
    with torch.no_grad():
        outs = [model(torch.from_numpy(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0)


def export_onnx(model: Any, example: np.ndarray, path: Path, input_name: str, output_name: str,
                opset: int = 17) -> Path:
    """Export to one self-contained ONNX file (TorchScript exporter, dynamic batch axis)."""
    import torch

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (torch.from_numpy(example),), str(path), dynamo=False, opset_version=opset,
        input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        do_constant_folding=True,
    )
    return path


def onnx_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """Run the exported fp32 ONNX file with onnxruntime (single thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def count_parameters(model: Any) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
