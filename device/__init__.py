"""Spinal's on-device half: bundle reader, runtimes, sensors and the daemon.

This package must stay lean: it never imports ``toolchain`` or a host-only package
(onnx, tensorflow, torch, onnx2tf, sklearn). ``tests/test_boundary.py`` enforces it.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` is looked up on first use: importlib.metadata costs tens of milliseconds at every start.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("spinal")
        except metadata.PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
