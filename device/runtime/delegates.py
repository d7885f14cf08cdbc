"""Delegates (TFLite) and execution providers (onnxruntime): parsing, loading and honest failure.

A delegate spec is one string (``RuntimePolicy.delegate``, ``--delegate``):

- ``None``, ``cpu``, ``xnnpack``: the CPU path (LiteRT applies XNNPACK by default; onnxruntime's CPU EP)
- ``none``: TFLite builtin kernels only, no XNNPACK
- ``edgetpu``, ``edgetpu:usb``, ``edgetpu:pci``, ``edgetpu:usb:0``: Coral, through ``libedgetpu.so.1``
- ``gpu``: the TFLite GPU delegate library (``libtensorflowlite_gpu_delegate.so``) or onnxruntime's CUDA EP
- a library path, with options: ``/opt/armnn/libarmnnDelegate.so,backends=CpuAcc,logging-severity=info``
- an onnxruntime provider: ``cuda``, ``tensorrt``, ``openvino``, ``rocm``, ``dml``, ``coreml``, ``qnn``,
  ``azure``, ``xnnpack``, ``acl``, ``armnn``, ``nnapi``, or a full ``...ExecutionProvider`` name

Loading failures are classified so that the warning names the cause and the fix: library missing,
not a shared library for this machine, not a TFLite delegate, no device found, permission denied
on the device node.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import BadInput
from device.runtime.base import DelegateError, first_line

EDGETPU_LIBRARY = "libedgetpu.so.1"
GPU_LIBRARY = "libtensorflowlite_gpu_delegate.so"
CPU_NAMES = frozenset({"cpu", "xnnpack", "default"})

ORT_PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider", "gpu": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider", "rocm": "ROCMExecutionProvider", "migraphx": "MIGraphXExecutionProvider",
    "dml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider", "qnn": "QNNExecutionProvider",
    "azure": "AzureExecutionProvider", "xnnpack": "XnnpackExecutionProvider", "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider", "nnapi": "NnapiExecutionProvider", "cann": "CANNExecutionProvider",
    "vitisai": "VitisAIExecutionProvider", "webgpu": "WebGpuExecutionProvider",
}
# Which wheel offers which provider, for the "install ..." half of a warning.
ORT_PROVIDER_WHEEL: dict[str, str] = {
    "CUDAExecutionProvider": "onnxruntime-gpu (matching your CUDA and cuDNN)",
    "TensorrtExecutionProvider": "onnxruntime-gpu plus TensorRT libraries",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "QNNExecutionProvider": "onnxruntime-qnn",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "XnnpackExecutionProvider": "an onnxruntime build with --use_xnnpack (the PyPI wheel has none)",
    "ACLExecutionProvider": "an onnxruntime build with --use_acl",
    "ArmNNExecutionProvider": "an onnxruntime build with --use_armnn",
}
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class DelegateSpec:
    """A parsed delegate spec. ``kind``: cpu, none, edgetpu, external (TFLite library) or provider (ORT)."""

    kind: str
    name: str
    library: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    provider: str | None = None

    @property
    def accelerated(self) -> bool:
        """Whether this asks for something other than the plain CPU path (and so must prove itself)."""
        return self.kind not in ("cpu", "none")

    def applies_to(self, runtime: str) -> bool:
        """Whether ``runtime`` can use this delegate at all."""
        if self.kind in ("cpu",):
            return True
        if runtime == "onnxruntime":
            return self.provider is not None
        return self.kind in ("none", "edgetpu", "external")


def parse_delegate(text: str | None) -> DelegateSpec:
    """Parse a delegate spec (see the module doc); raises :class:`BadInput` for an unknown one."""
    raw = (text or "").strip()
    low = raw.lower()
    if low in ("", *CPU_NAMES):
        return DelegateSpec(kind="cpu", name="cpu", provider=CPU_PROVIDER if low != "xnnpack" else None)
    if low == "none":
        return DelegateSpec(kind="none", name="none")
    if low == "edgetpu" or low.startswith("edgetpu:"):
        parts = low.split(":")[1:]
        if parts and (parts[0] not in ("usb", "pci") or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit())):
            raise BadInput(f"delegate {raw!r}: expected edgetpu, edgetpu:usb, edgetpu:pci, edgetpu:usb:N or "
                           "edgetpu:pci:N")
        options: dict[str, str] = {"device": ":".join(parts)} if parts else {}
        return DelegateSpec(kind="edgetpu", name=raw, library=EDGETPU_LIBRARY, options=options)
    if low == "gpu":
        return DelegateSpec(kind="external", name="gpu", library=GPU_LIBRARY, provider=ORT_PROVIDERS["gpu"])
    if low.endswith("executionprovider"):
        return DelegateSpec(kind="provider", name=raw, provider=raw)
    if low in ORT_PROVIDERS:
        return DelegateSpec(kind="provider", name=low, provider=ORT_PROVIDERS[low])
    if "/" in raw or ".so" in raw or raw.endswith(".dll") or raw.endswith(".dylib"):
        library, *opts = raw.split(",")
        options = {}
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep or not key.strip():
                raise BadInput(f"delegate {raw!r}: option {opt!r} is not key=value")
            options[key.strip()] = value.strip()
        return DelegateSpec(kind="external", name=Path(library).name, library=library, options=options)
    known = ", ".join(["cpu", "none", "edgetpu", "gpu", *sorted(set(ORT_PROVIDERS) - {"gpu"})])
    raise BadInput(f"delegate {raw!r} is unknown (expected one of {known}, a library path, "
                   "or an onnxruntime ...ExecutionProvider name)")


# --------------------------------------------------------------------------------------------
# TFLite delegates


def _library_problem(spec: DelegateSpec) -> str | None:
    """Why ``spec.library`` cannot be a delegate here (cause and fix), or ``None`` if it loads."""
    library = spec.library or ""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        msg = first_line(exc)
        if "No such file" in msg or "cannot open shared object" in msg:
            if spec.kind == "edgetpu":
                return (f"the Edge TPU runtime {library} is not installed; install it with "
                        "'apt install libedgetpu1-std' from Coral's apt repository (or libedgetpu1-max)")
            if library == GPU_LIBRARY:
                return (f"the TFLite GPU delegate library {library} is not installed; build it from the "
                        "TensorFlow sources or pass its full path as --delegate /path/to/lib.so")
            return f"delegate library {library} not found; check the path (or LD_LIBRARY_PATH)"
        if "Permission denied" in msg:
            return f"cannot read delegate library {library} (permission denied); fix its file permissions"
        if "ELF" in msg or "invalid" in msg.lower() or "too short" in msg:
            return f"{library} is not a shared library for this machine ({msg}); get the build for {os.uname().machine}"
        return f"cannot load delegate library {library} ({msg})"
    if not hasattr(lib, "tflite_plugin_create_delegate"):
        return (f"{library} loads but is not a TFLite external delegate (no tflite_plugin_create_delegate "
                "symbol); pass the delegate's plugin library")
    return None


def edgetpu_device_problem(dev: Path = Path("/dev"), usb: Path = Path("/sys/bus/usb/devices"),
                           access: Any = os.access) -> str:
    """Why the Edge TPU library loaded but no delegate could be made: no device, or no permission."""
    apex = sorted(dev.glob("apex_*"))
    for node in apex:
        if not access(node, os.R_OK | os.W_OK):
            return (f"permission denied on {node}; install Spinal's udev rule (firmware/) or add the service "
                    "user to the 'apex' group, then re-plug or reboot")
    usb_nodes = []
    for entry in usb.glob("*"):
        try:
            vendor = (entry / "idVendor").read_text().strip()
            product = (entry / "idProduct").read_text().strip()
            if (vendor, product) not in (("1a6e", "089a"), ("18d1", "9302")):  # Coral USB before/after firmware
                continue
            bus = int((entry / "busnum").read_text())
            num = int((entry / "devnum").read_text())
        except (OSError, ValueError):  # a device unplugged while we look, or an entry without numbers
            continue
        usb_nodes.append(dev / "bus" / "usb" / f"{bus:03d}" / f"{num:03d}")
    for node in usb_nodes:
        if node.exists() and not access(node, os.R_OK | os.W_OK):
            return (f"permission denied on the Coral USB device {node}; install Spinal's udev rule (firmware/) "
                    "or add the service user to the 'plugdev' group, then re-plug it")
    if not apex and not usb_nodes:
        return "no Edge TPU found (no /dev/apex_* and no Coral USB device); plug it in or check dmesg"
    return "the Edge TPU is present but the delegate could not open it; re-plug it and check dmesg"


def load_tflite_delegate(spec: DelegateSpec, load_delegate: Any) -> Any:
    """Load a TFLite delegate with the runtime's ``load_delegate``; raise :class:`DelegateError` with cause + fix."""
    assert spec.library is not None
    problem = _library_problem(spec)
    if problem:
        raise DelegateError(f"delegate {spec.name}: {problem}")
    try:
        return load_delegate(spec.library, dict(spec.options) or None)
    except (OSError, ValueError, RuntimeError, AttributeError) as exc:
        if spec.kind == "edgetpu":
            raise DelegateError(f"delegate {spec.name}: {edgetpu_device_problem()} ({first_line(exc)})") from None
        raise DelegateError(f"delegate {spec.name}: {spec.library} refused to create a delegate with options "
                            f"{spec.options or {}} ({first_line(exc)})") from None


# --------------------------------------------------------------------------------------------
# onnxruntime providers


def ort_provider_problem(provider: str, available: list[str], version: str) -> str | None:
    """Why ``provider`` cannot be used with this onnxruntime wheel (cause and fix), or ``None``."""
    if provider in available:
        return None
    wheel = ORT_PROVIDER_WHEEL.get(provider, "an onnxruntime build that includes it")
    return (f"{provider} is not in this onnxruntime {version} wheel (it offers {', '.join(available)}); "
            f"install {wheel}")


def present_delegates(available_ort: list[str] | None = None) -> list[str]:
    """Accelerators this machine appears to offer, as delegate specs (for the bench matrix)."""
    import ctypes.util  # here: it imports subprocess (and locale), which the daemon needs nowhere else

    found = []
    if ctypes.util.find_library("edgetpu") or Path("/usr/lib/aarch64-linux-gnu/libedgetpu.so.1").exists():
        found.append("edgetpu")
    if ctypes.util.find_library("tensorflowlite_gpu_delegate"):
        found.append("gpu")
    for provider in available_ort or []:
        if provider not in (CPU_PROVIDER, "AzureExecutionProvider"):
            found.append(provider)
    return found
