"""``device/`` stays lean: no ``toolchain``, no host-only package, ever (DESIGN.md).

Every module under ``device`` is imported in a fresh interpreter in which the host-only
packages cannot be imported at all (as on a Raspberry Pi with only the ``device`` extra);
then ``sys.modules`` must hold none of them. A module that needs one at import time fails
here with the module's name. In the device-only venv (`make test` builds one on Python 3.13)
the packages are really absent, and the second test checks that too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = ("toolchain", "onnx", "tensorflow", "torch", "onnx2tf", "sklearn", "keras", "tf_keras",
             "tf2onnx", "skl2onnx", "onnxsim", "onnx_graphsurgeon", "sktime", "pvlib", "pandas")

SCRIPT = r"""
import importlib, importlib.abc, json, pkgutil, sys
BLOCKED = set(json.loads(sys.argv[1]))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"host-only package {name!r} is not available on a device")
        return None

sys.meta_path.insert(0, Blocker())
import device
failures = {}
modules = []
for info in pkgutil.walk_packages(device.__path__, "device."):
    modules.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failures[info.name] = f"{type(exc).__name__}: {exc}"
loaded = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
print(json.dumps({"modules": modules, "failures": failures, "loaded": loaded}))
"""


def test_every_device_module_imports_without_host_packages():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(HOST_ONLY)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "device.cli" in result["modules"] and "device.bundle" in result["modules"]
    assert result["failures"] == {}, "device modules that need a host-only package at import time"
    assert result["loaded"] == []


@pytest.mark.skipif(os.environ.get("SPINAL_DEVICE_ONLY") != "1", reason="only in the device-only venv")
def test_device_only_venv_has_no_host_packages():
    """`pip install '.[device,onnx-runtime,mqtt]'` pulled none of the host stack."""
    present = [name for name in HOST_ONLY if name != "toolchain" and importlib.util.find_spec(name)]
    assert present == []
