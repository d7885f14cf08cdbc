"""Types every runtime backend shares: the policy, what actually runs, and a loaded model file.

A *session* is one model file loaded in one runtime (LiteRT, tflite-runtime or onnxruntime);
it speaks the file's own tensors. :class:`device.runtime.model.Model` wraps a session and speaks
the bundle's *logical* tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from device.errors import BadInput, CheckFailed

if TYPE_CHECKING:
    from device.manifest import Quantization

log = logging.getLogger("spinal.runtime")


@dataclass(frozen=True)
class RuntimeRecord:
    """One runtime, everything the rest of the code needs to know about it by name (like sensors' ``DRIVERS``).

    - ``format``: the artifact format it runs (``tflite`` or ``onnx``).
    - ``package``: the distribution that provides it (for versions and install hints); ``module``: its import
      name (probed with ``importlib.util.find_spec``, never imported to find out).
    - ``install_hint``: what to run when it is missing.
    - ``rank``: preference when several runtimes could run the same artifact equally well (lower first).
    - ``backend``: the ``device.runtime`` module with its ``open_session``.
    - ``dists``: every distribution that may provide it (the first installed gives :meth:`version`).
    """

    name: str
    format: str
    package: str
    module: str
    install_hint: str
    rank: int
    backend: str
    dists: tuple[str, ...] = ()

    def version(self) -> str:
        """The installed version, from the name of its ``*.dist-info`` (:func:`dist_version`: neither the runtime
        nor its backend module is imported); for an unusual install ``importlib.metadata``, then the module's
        ``__version__`` (``unknown`` without one). ``ImportError`` if it is not installed."""
        dists = self.dists or (self.package,)
        found = dist_version(*dists)
        if found is not None:
            return found
        import importlib
        from importlib import metadata

        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return str(getattr(importlib.import_module(self.module), "__version__", "unknown"))

    def load_backend(self) -> Any:
        """The backend module (imported now: the runtime itself is imported by its ``open_session``)."""
        import importlib

        return importlib.import_module(self.backend)


# Registry order is the order runtimes are tried and listed in.
RUNTIMES: dict[str, RuntimeRecord] = {r.name: r for r in (
    RuntimeRecord("litert", "tflite", "ai-edge-litert", "ai_edge_litert",
                  "pip install 'spinal[device]' (ai-edge-litert)", rank=0, backend="device.runtime.litert"),
    RuntimeRecord("tflite-runtime", "tflite", "tflite-runtime", "tflite_runtime",
                  "pip install tflite-runtime (Python <= 3.12, numpy < 2; prefer ai-edge-litert)", rank=2,
                  backend="device.runtime.tflite"),
    RuntimeRecord("onnxruntime", "onnx", "onnxruntime", "onnxruntime",
                  "pip install 'spinal[onnx-runtime]' (onnxruntime)", rank=1, backend="device.runtime.onnx",
                  dists=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")),
)}

# The per-field views the code used before the registry (derived from it, kept so callers need not change).
RUNTIME_FORMAT: dict[str, str] = {name: r.format for name, r in RUNTIMES.items()}
RUNTIME_PACKAGE: dict[str, str] = {name: r.package for name, r in RUNTIMES.items()}
RUNTIME_MODULE: dict[str, str] = {name: r.module for name, r in RUNTIMES.items()}
INSTALL_HINT: dict[str, str] = {name: r.install_hint for name, r in RUNTIMES.items()}
RUNTIME_RANK: dict[str, int] = {name: r.rank for name, r in RUNTIMES.items()}


def runtimes_for(fmt: str) -> tuple[str, ...]:
    """The runtimes that run artifacts of format ``fmt``, in registry order."""
    return tuple(name for name, r in RUNTIMES.items() if r.format == fmt)


class DelegateError(CheckFailed):
    """A delegate or execution provider could not be used (missing, refused, or wrong results)."""


class InputError(BadInput):
    """An input handed to :meth:`Model.run` has the wrong name, shape, dtype or non-finite values."""


@dataclass(frozen=True)
class RuntimePolicy:
    """How to pick and load a model.

    - ``runtime``: ``auto`` or one of ``litert``, ``tflite-runtime``, ``onnxruntime``.
    - ``artifact``: an artifact path inside the bundle, or a precision (``fp32``, ``fp16``, ``int8``,
      ``int8-io``); ``None`` lets ``auto`` choose.
    - ``threads``: CPU threads for the runtime (``None``: the runtime's default).
    - ``delegate``: ``None``/``cpu`` (XNNPACK for TFLite, the CPU provider for onnxruntime), ``none``
      (TFLite builtin kernels only), ``edgetpu[:usb|:pci]``, ``gpu``, a delegate library path
      (``/path/lib.so[,key=value...]``) or an onnxruntime provider (``cuda``, ``tensorrt``,
      ``openvino``, ``CUDAExecutionProvider`` ...).
    - ``fail_closed``: refuse to run instead of falling back to CPU when the delegate fails.
    - ``autotune``: let ``auto`` micro-benchmark the candidates once (cached per device and bundle).
    - ``cache_dir``: where ``auto`` keeps its measurements (default ``$SPINAL_CACHE_DIR`` or
      ``~/.cache/spinal``).
    """

    runtime: str = "auto"
    artifact: str | None = None
    threads: int | None = None
    delegate: str | None = None
    fail_closed: bool = False
    autotune: bool = True
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", *RUNTIMES):
            raise BadInput(f"runtime {self.runtime!r} is not one of auto, {', '.join(RUNTIMES)}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 256):
            raise BadInput(f"threads must be an integer from 1 to 256, got {self.threads!r}")


@dataclass(frozen=True)
class RuntimeInfo:
    """What actually runs, for logs, ``verify``/``bench`` output and the daemon's metrics."""

    runtime: str
    version: str
    artifact: str
    precision: str
    delegate: str | None
    provider: str | None
    threads: int | None
    fallback_reason: str | None = None

    def describe(self) -> str:
        """One line: ``litert 2.1.0 model_int8.tflite (int8) on XNNPACK, 2 threads``."""
        on = self.delegate or self.provider or "CPU"
        threads = f", {self.threads} threads" if self.threads else ""
        fallback = f" (fallback: {self.fallback_reason})" if self.fallback_reason else ""
        return f"{self.runtime} {self.version} {self.artifact} ({self.precision}) on {on}{threads}{fallback}"


@dataclass(frozen=True)
class RawTensor:
    """A tensor as the model file declares it (``-1`` marks a dynamic dimension)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    quantization: Quantization | None = None


class Session(Protocol):
    """One model file loaded in one runtime. ``run`` takes and returns the file's own tensors, in order."""

    runtime: str
    version: str
    path: Path
    inputs: tuple[RawTensor, ...]
    outputs: tuple[RawTensor, ...]
    delegate: str | None
    provider: str | None
    threads: int | None
    fallback_reason: str | None

    def run(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]: ...

    def resize(self, shapes: Sequence[tuple[int, ...]]) -> None: ...

    def close(self) -> None: ...


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (runtimes write pages)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def dist_version(*names: str) -> str | None:
    """The version of the first of the distributions ``names`` installed on ``sys.path``, read from the name of
    its ``<name>-<version>.dist-info`` directory; ``None`` when none is found that way.

    What ``importlib.metadata.version`` answers for an ordinary install, without importing it (~3 MiB and
    ~20 ms the daemon and a first start do not need); callers fall back to it for unusual installs.
    """
    import os
    import re
    import sys

    prefixes = [re.sub(r"[-_.]+", "_", n).lower() + "-" for n in names]
    for entry in sys.path:
        try:
            found = [n for n in os.listdir(entry or ".") if n.endswith(".dist-info")]
        except OSError:
            continue
        for prefix in prefixes:
            for n in found:
                if n.lower().startswith(prefix):
                    return n[len(prefix):-len(".dist-info")]
    return None
