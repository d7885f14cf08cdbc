"""The onnxruntime backend, with providers checked against what the installed wheel offers.

onnxruntime falls back to the CPU quietly twice over: a provider the wheel lacks only warns,
and nodes the provider cannot run are placed on the CPU one by one. Both are detected here:
the first by comparing ``session.get_providers()`` with what was asked, the second by
building the session once with ``session.disable_cpu_ep_fallback`` (which refuses such a
graph) and reading why it refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelFileError
from device.runtime.base import RUNTIMES, DelegateError, RawTensor, first_line, log
from device.runtime.delegates import CPU_PROVIDER, DelegateSpec, ort_provider_problem

NAME = "onnxruntime"
_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}


def version() -> str:
    """The installed onnxruntime version (whichever wheel provides it)."""
    return RUNTIMES[NAME].version()


def available_providers() -> list[str]:
    """The execution providers the installed onnxruntime wheel offers."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _options(ort: Any, threads: int | None, strict: bool) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 4 if strict else 3  # the strict probe's refusal is expected: keep it off stderr
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if strict:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return so


def _load_error(path: Path, exc: Exception) -> ModelFileError:
    return ModelFileError(f"{path}: onnxruntime cannot load it ({first_line(exc)})")


def open_session(path: Path, threads: int | None, delegate: DelegateSpec, fail_closed: bool = False) -> OrtSession:
    """Load ``path`` in onnxruntime on the CPU or on ``delegate``'s provider.

    Raises :class:`DelegateError` when the provider is missing from the wheel, fails to start, or
    ends up not running the graph; a partial per-node fallback to CPU is recorded in
    ``fallback_reason`` (and refused when ``fail_closed``).
    """
    import onnxruntime as ort

    if delegate.kind in ("edgetpu", "external", "none") and delegate.provider is None:
        raise DelegateError(f"delegate {delegate.name} is a TFLite delegate; onnxruntime takes providers "
                            "(cuda, tensorrt, openvino ...)")
    provider = delegate.provider or CPU_PROVIDER
    ver = version()
    partial: str | None = None
    if provider != CPU_PROVIDER:
        problem = ort_provider_problem(provider, available_providers(), ver)
        if problem:
            raise DelegateError(f"delegate {delegate.name}: {problem}")
        try:  # the probe: succeeds only if the provider takes every node
            ort.InferenceSession(str(path), _options(ort, threads, strict=True), providers=[provider])
        except Exception as exc:
            msg = first_line(exc)
            if "fallback to CPU EP has been explicitly disabled" in msg or "assigned to the default CPU EP" in msg:
                partial = f"some nodes of {path.name} are not supported by {provider} and run on the CPU"
            elif "Load model" in msg or "INVALID_PROTOBUF" in msg or "INVALID_GRAPH" in msg:
                raise _load_error(path, exc) from None
            else:
                raise DelegateError(f"delegate {delegate.name}: {provider} failed to start ({msg})") from None
        if partial and fail_closed:
            raise DelegateError(f"delegate {delegate.name}: {partial} (fail-closed)")
    providers = [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
    try:
        sess = ort.InferenceSession(str(path), _options(ort, threads, strict=False), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        if provider != CPU_PROVIDER and "Load model" not in str(exc):
            raise DelegateError(f"delegate {delegate.name}: {provider} failed ({first_line(exc)})") from None
        raise _load_error(path, exc) from None
    actual = list(sess.get_providers())
    if actual[0] != provider:
        raise DelegateError(f"delegate {delegate.name}: onnxruntime silently fell back (asked for {provider}, "
                            f"the session runs on {', '.join(actual)})")
    if partial:
        log.warning("%s; expect lower speed (use fail_closed to refuse this)", partial)
    return OrtSession(sess, ver, path, threads, provider, partial)


class OrtSession:
    """One ``.onnx`` file in an onnxruntime session; ``run`` takes and returns the file's tensors."""

    runtime = NAME

    def __init__(self, sess: Any, ver: str, path: Path, threads: int | None, provider: str,
                 partial: str | None) -> None:
        self._sess = sess
        self.version = ver
        self.path = path
        self.threads = threads
        self.provider: str | None = provider
        self.delegate = None if provider == CPU_PROVIDER else provider
        self.fallback_reason = partial
        self.inputs = tuple(self._raw(v, path) for v in sess.get_inputs())
        self.outputs = tuple(self._raw(v, path) for v in sess.get_outputs())
        self._in_names = [t.name for t in self.inputs]
        self._out_names = [t.name for t in self.outputs]
        self._run = sess.run

    @staticmethod
    def _raw(value: Any, path: Path) -> RawTensor:
        dtype = _DTYPES.get(value.type)
        if dtype is None:
            raise ModelFileError(f"{path}: tensor {value.name!r} has type {value.type}, which Spinal does not feed "
                                 "(numeric tensors only)")
        shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (value.shape or ()))
        return RawTensor(name=value.name, shape=shape, dtype=np.dtype(dtype))

    def resize(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """onnxruntime takes any concrete shape at run time: nothing to do."""

    def single_call(self) -> Any:
        """For a one-input, one-output file: ``call(x) -> y``."""
        run, outs, (name,), failed = self._run, self._out_names, self._in_names, self._failed

        def call(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            try:
                return run(outs, {name: x})[0]  # type: ignore[no-any-return]  # (hot path: no typed local)
            except Exception as exc:
                raise failed(exc) from exc

        return call

    def run(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        """Run the session on the inputs (in file order) and return the outputs (in file order)."""
        try:
            return list(self._run(self._out_names, dict(zip(self._in_names, arrays, strict=True))))
        except Exception as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> Exception:
        """onnxruntime's own exception types (InvalidArgument, Fail, EPFail ...) derive from ``Exception`` only:
        as a ``RuntimeError``, like the TFLite runtimes raise, so callers catch one kind of inference failure."""
        if isinstance(exc, RuntimeError | ValueError):
            return exc
        return RuntimeError(f"{self.path.name}: onnxruntime failed to run it ({first_line(exc)})")

    def close(self) -> None:
        """Drop the session."""
        self._sess = None
