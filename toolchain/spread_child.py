"""A parity bound's TFLite kernel paths, measured in a child process.

LiteRT's reference kernels abort the process on some files its other kernels run (PP-OCRv6's recognizer,
int8: SIGABRT, no message), and tflite-runtime segfaults on others: the first contact of a kernel path with a
file is a child's, as on the device. One child measures the paths in turn and reports each as it finishes; when
it dies, the path it was on is skipped, named with the signal, and a new child goes on with the next.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.children import child_env, exit_name

if TYPE_CHECKING:
    from device.runtime.model import Model

CODE = "from toolchain.spread_child import serve; serve()"
Feeds = list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class SpreadRequest:
    """What a child needs to measure ``path``'s kernel paths as the device's :class:`Model` runs them."""

    path: Path
    fmt: str
    like: tuple[Any, Any, Any, str]  # the converter's model: logical inputs, outputs, artifact, precision
    feeds: Feeds
    golden: Feeds
    paths: str = "toolchain.bounds:kernel_paths"  # module:function giving the KernelPath list
    start: int = 0


def max_abs(outs: list[dict[str, np.ndarray]], ref: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """``{output: the largest |difference|}`` of ``outs`` against ``ref``, sample by sample."""
    worst: dict[str, float] = {}
    for got, want in zip(outs, ref, strict=True):
        for name, value in want.items():
            diff = np.abs(np.asarray(got[name], np.float64) - np.asarray(value, np.float64))
            worst[name] = max(worst.get(name, 0.0), float(diff.max(initial=0.0)))
    return worst


def measure_one(kernel: Any, make_model: Callable[[Any], Model], feeds: list[dict[str, np.ndarray]],
                golden: list[dict[str, np.ndarray]]) -> dict[str, float] | str:
    """One kernel path's (a ``toolchain.bounds.KernelPath``) ``{output: max |err| against golden}``, or why it
    could not run here."""
    try:
        session = kernel.open()
    except Exception as exc:  # a runtime that cannot load this file here is not a kernel path for it
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    model = make_model(session)
    try:
        return max_abs([model.run(f) for f in feeds], golden)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        model.close()


def _kernel_paths(request: SpreadRequest) -> list[Any]:
    module, _, name = request.paths.partition(":")
    return list(getattr(import_module(module), name)(request.path, request.fmt))


def measure_in_children(request: SpreadRequest) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """``measure_spread``'s answer for ``request``, each kernel path's first contact in a child process."""
    labels = [k.label for k in _kernel_paths(request)]
    spread: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    start = 0
    while start < len(labels):
        results, code, last = _run_child(replace(request, start=start))
        for label, value in results:
            (spread if isinstance(value, dict) else skipped)[label] = value
        start += len(results)
        if start < len(labels):  # the child died on labels[start]
            skipped[labels[start]] = f"crashed the process ({exit_name(code)}){f': {last}' if last else ''}"
            start += 1
    return spread, skipped


def _run_child(request: SpreadRequest) -> tuple[list[tuple[str, Any]], int, str]:
    proc = subprocess.run([sys.executable, "-c", CODE], input=pickle.dumps(request), capture_output=True,
                          env=child_env(TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    results = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results.append((item["label"], item["spread"] if "spread" in item else item["skipped"]))
    errors = [x for x in proc.stderr.decode(errors="replace").splitlines() if x.strip()]
    return results, proc.returncode, errors[-1][:200] if errors else ""


def serve() -> None:
    """The child: measure the kernel paths from ``request.start`` on, one JSON line each, flushed."""
    from device.runtime.model import Model

    request: SpreadRequest = pickle.loads(sys.stdin.buffer.read())
    inputs, outputs, artifact, precision = request.like
    for kernel in _kernel_paths(request)[request.start:]:
        value = measure_one(kernel, lambda session: Model(session, inputs, outputs, artifact, precision,
                                                          request.path.name), request.feeds, request.golden)
        key = "spread" if isinstance(value, dict) else "skipped"
        sys.stdout.write(json.dumps({"label": kernel.label, key: value}) + "\n")
        sys.stdout.flush()
