"""The LiteRT backend (``ai_edge_litert``), and the TFLite interpreter session both TFLite runtimes share.

LiteRT is the preferred TFLite runtime: it works with numpy 2, has aarch64 wheels for Python
3.11-3.13 and applies XNNPACK to float and int8 models by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelFileError
from device.manifest import Quantization
from device.modelfile import _quiet_stderr, tflite_quantization
from device.runtime.base import RUNTIMES, DelegateError, RawTensor, first_line
from device.runtime.delegates import DelegateSpec, load_tflite_delegate

NAME = "litert"


def version() -> str:
    """The installed ai-edge-litert version."""
    return RUNTIMES[NAME].version()


def open_session(path: Path, threads: int | None, delegate: DelegateSpec) -> InterpreterSession:
    """Load ``path`` in LiteRT with ``threads`` CPU threads and ``delegate``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

    return open_interpreter(Interpreter, load_delegate, OpResolverType, NAME, version(), path, threads, delegate)


def _quantization(detail: dict[str, Any]) -> Quantization | None:
    """The tensor's quantization when every scale is positive (a zero scale marks no real quantization)."""
    q = tflite_quantization(detail)
    return q if q is not None and all(s > 0 for s in q.scale) else None


def _raw(detail: dict[str, Any]) -> RawTensor:
    signature = detail.get("shape_signature")
    shape = signature if signature is not None and len(signature) else detail["shape"]
    return RawTensor(name=detail["name"], shape=tuple(int(d) for d in shape), dtype=np.dtype(detail["dtype"]),
                     quantization=_quantization(detail))


def open_interpreter(interpreter_class: Any, load_delegate: Any, resolver_type: Any, runtime: str, ver: str,
                     path: Path, threads: int | None, delegate: DelegateSpec) -> InterpreterSession:
    """Build a TFLite interpreter (either runtime: their Python APIs are the same) and wrap it."""
    delegates = []
    kwargs: dict[str, Any] = {}
    if delegate.kind in ("edgetpu", "external"):
        delegates.append(load_tflite_delegate(delegate, load_delegate))
    elif delegate.kind == "none":
        kwargs["experimental_op_resolver_type"] = resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate.kind == "provider":
        raise DelegateError(f"delegate {delegate.name} is an onnxruntime provider; {runtime} takes TFLite "
                            "delegates (edgetpu, gpu, a library path)")
    try:
        with _quiet_stderr():
            interp = interpreter_class(model_path=str(path), num_threads=threads,
                                       experimental_delegates=delegates or None, **kwargs)
    except (ValueError, RuntimeError) as exc:
        if delegates:
            raise DelegateError(f"delegate {delegate.name} failed on {path.name} ({first_line(exc)})") from None
        raise ModelFileError(f"{path}: {runtime} cannot load it ({first_line(exc)})") from None
    session = InterpreterSession(interp, runtime, ver, path, threads, delegate, delegates)
    try:
        with _quiet_stderr():
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        msg = first_line(exc)
        if "edgetpu-custom-op" in str(exc):
            raise ModelFileError(f"{path}: compiled for the Edge TPU; run it with --delegate edgetpu "
                                 "(or use the bundle's plain int8 artifact)") from None
        if delegates:
            raise DelegateError(f"delegate {delegate.name} failed on {path.name} ({msg})") from None
        raise ModelFileError(f"{path}: {runtime} cannot prepare it ({msg})") from None
    if delegate.kind == "cpu" and session.delegated() is False:
        session.delegate = None  # XNNPACK took no part of this graph: builtin kernels run it
    return session


class InterpreterSession:
    """One ``.tflite`` file in a TFLite interpreter; ``run`` takes and returns the file's tensors."""

    def __init__(self, interp: Any, runtime: str, ver: str, path: Path, threads: int | None,
                 delegate: DelegateSpec, delegate_objects: list[Any]) -> None:
        self._it = interp
        self._delegates = delegate_objects  # keep the delegate libraries alive as long as the interpreter
        self.runtime = runtime
        self.version = ver
        self.path = path
        self.threads = threads
        self.delegate = {"cpu": "XNNPACK", "none": None}.get(delegate.kind, delegate.name)
        self.provider = None
        self.fallback_reason: str | None = None
        in_details = interp.get_input_details()
        out_details = interp.get_output_details()
        self.inputs = tuple(_raw(d) for d in in_details)
        self.outputs = tuple(_raw(d) for d in out_details)
        self._in_index = [d["index"] for d in in_details]
        self._out_index = [d["index"] for d in out_details]
        self._shapes = [tuple(int(x) for x in d["shape"]) for d in in_details]
        self._dynamic = any(-1 in t.shape for t in self.inputs)
        self._set = interp.set_tensor
        self._get = interp.get_tensor
        self._invoke = interp.invoke
        if len(self._in_index) == 1 and len(self._out_index) == 1 and not self._dynamic:
            self.run = self._run_one  # type: ignore[method-assign]

    def resize(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """Give dynamic inputs concrete shapes and re-allocate (a no-op when nothing changes)."""
        changed = False
        for i, shape in enumerate(shapes):
            if tuple(shape) != self._shapes[i]:
                self._it.resize_tensor_input(self._in_index[i], list(shape), strict=False)
                self._shapes[i] = tuple(shape)
                changed = True
        if changed:
            try:
                self._it.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelFileError(f"{self.path}: cannot resize inputs to {[list(s) for s in shapes]} "
                                     f"({first_line(exc)})") from None

    def single_call(self) -> Any:
        """For a one-input, one-output file: ``call(x) -> y`` with the interpreter's methods bound."""
        set_tensor, invoke, get_tensor = self._set, self._invoke, self._get
        (i,), (o,) = self._in_index, self._out_index
        if self._dynamic:
            run = self.run
            return lambda x: run([x])[0]

        def call(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            set_tensor(i, x)
            invoke()
            return get_tensor(o)  # type: ignore[no-any-return]  # (hot path: no typed local)

        return call

    def _run_one(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        self._set(self._in_index[0], arrays[0])
        self._invoke()
        return [self._get(self._out_index[0])]

    def run(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        """Set the inputs, invoke, and return copies of the outputs."""
        if self._dynamic:
            self.resize([a.shape for a in arrays])
        for index, array in zip(self._in_index, arrays, strict=True):
            self._set(index, array)
        self._invoke()
        return [self._get(index) for index in self._out_index]

    def delegated(self) -> bool | None:
        """Whether a delegate took part of the graph (a DELEGATE node exists); ``None`` if the runtime won't say."""
        try:
            return any(op.get("op_name") == "DELEGATE" for op in self._it._get_ops_details())
        except (AttributeError, RuntimeError, ValueError):
            return None

    def tensor_dtypes(self) -> set[str]:
        """The dtypes of every tensor in the graph (to tell fp32, fp16 and int8 files apart)."""
        return {np.dtype(d["dtype"]).name for d in self._it.get_tensor_details()}

    def close(self) -> None:
        """Drop the interpreter (and then its delegates)."""
        self._it = None
        self._delegates = []
