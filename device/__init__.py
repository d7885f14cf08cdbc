"""Spinal's on-device half: bundle reader, runtimes, sensors and the daemon.

This package must stay lean: it never imports ``toolchain`` or a host-only package
(onnx, tensorflow, torch, onnx2tf, sklearn). ``tests/test_boundary.py`` enforces it.
"""

from importlib import metadata

try:
    __version__ = metadata.version("spinal")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
