"""The on-device inference core: one ``Model`` interface over LiteRT, tflite-runtime and onnxruntime.

>>> model = load_model(Path("bundle.spinal"), RuntimePolicy(runtime="auto", threads=2))
>>> outputs = model.run({"imu": window})   # logical tensors in, logical tensors out
>>> model.info                              # what actually runs, for logs and metrics

Nothing here imports a runtime until a model is loaded.
"""

from device.runtime.base import DelegateError, InputError, RuntimeInfo, RuntimePolicy
from device.runtime.model import LogicalTensor, Model
from device.runtime.select import installed_runtimes, load_model

__all__ = [
    "DelegateError", "InputError", "LogicalTensor", "Model", "RuntimeInfo", "RuntimePolicy",
    "installed_runtimes", "load_model",
]
