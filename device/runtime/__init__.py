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
    from pathlib import Path

    from device.bundle import Bundle
    from device.runtime.cpu import installed_runtimes
    from device.runtime.model import LogicalTensor, Model

# Imported on first use: the policy and error types alone (the config, the daemon's imports) need no more.
_WHERE = {"LogicalTensor": "model", "Model": "model", "installed_runtimes": "cpu"}


def load_model(source: Bundle | Path | str, policy: RuntimePolicy | None = None) -> Model:
    """Load a bundle (open or by path) or a plain model file according to ``policy``
    (:func:`device.runtime.select.load_model`).

    The probe child that the bundle's TFLite files new to this device need is started first
    (:mod:`device.runtime.ahead`): it gets ready while the selection code is imported and the bundle unpacked.
    """
    from device.runtime.ahead import probe_ahead

    policy = policy or RuntimePolicy()
    with probe_ahead(source, policy):
        from device.runtime.select import load_model as select_and_load

        return select_and_load(source, policy)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'device.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"device.runtime.{_WHERE[name]}"), name)


__all__ = [
    "DelegateError", "InputError", "LogicalTensor", "Model", "RuntimeInfo", "RuntimePolicy",
    "installed_runtimes", "load_model",
]
