"""The on-device inference core: one ``Model`` interface over LiteRT, tflite-runtime and onnxruntime.

>>> model = load_model(Path("bundle.spinal"), RuntimePolicy(runtime="auto", threads=2))
>>> outputs = model.run({"imu": window})   # logical tensors in, logical tensors out
>>> model.info                              # what actually runs, for logs and metrics

Nothing here imports a runtime until a model is loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from device.runtime.base import DelegateError, InputError, RuntimeInfo, RuntimePolicy

if TYPE_CHECKING:
    from device.runtime.cpu import installed_runtimes
    from device.runtime.model import LogicalTensor, Model
    from device.runtime.select import load_model

# Imported on first use: the policy and error types alone (the config, the daemon's imports) need no more.
_WHERE = {"LogicalTensor": "model", "Model": "model", "installed_runtimes": "cpu", "load_model": "select"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'device.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"device.runtime.{_WHERE[name]}"), name)


__all__ = [
    "DelegateError", "InputError", "LogicalTensor", "Model", "RuntimeInfo", "RuntimePolicy",
    "installed_runtimes", "load_model",
]
