"""Loading one model file in one runtime: the session, the ``Model`` over it, and a delegate that counts only
after a test inference on it matched the golden vectors (or, for a plain file, the CPU on random inputs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.errors import BadInput, MissingDependency
from device.manifest import Artifact, Manifest
from device.modelfile import ensure_tflite_loadable
from device.runtime.base import RUNTIMES, DelegateError, RuntimePolicy, Session, first_line, log
from device.runtime.delegates import DelegateSpec, parse_delegate
from device.runtime.model import Model, logical_from_raw, logical_from_spec
from device.runtime.parity import ParityResult, check_against, check_golden, tolerance_for

CPU = DelegateSpec(kind="cpu", name="cpu", provider="CPUExecutionProvider")


def open_session(runtime: str, path: Path, threads: int | None, delegate: DelegateSpec,
                 fail_closed: bool = False, *, trusted: bool = False) -> Session:
    """Load one model file in one runtime (no fallback, no validation).

    ``trusted``: the file's bytes were already read safely by this runtime on this device (a verified bundle
    whose measurement is cached), so the child-process first contact is skipped.
    """
    import importlib.util

    record = RUNTIMES[runtime]
    if importlib.util.find_spec(record.module) is None:
        raise MissingDependency(f"runtime {runtime} is not installed; install it with: {record.install_hint}")
    backend = record.load_backend()
    if runtime == "onnxruntime":
        session: Session = backend.open_session(path, threads, delegate, fail_closed)
        return session
    if not trusted:
        # The TFLite runtimes can crash (SIGSEGV) on a corrupt file: a child process reads it first.
        ensure_tflite_loadable(path, runtime)  # each runtime: its own first contact in a child
    session = backend.open_session(path, threads, delegate)
    return session


def _file_precision(session: Session) -> str:
    if any(t.dtype.name in ("int8", "uint8") for t in session.inputs):
        return "int8-io"
    if hasattr(session, "tensor_dtypes"):
        dtypes = session.tensor_dtypes()
        return "int8" if dtypes & {"int8", "uint8"} else "fp16" if "float16" in dtypes else "fp32"
    from device.onnx_reader import read_onnx

    ops = set(read_onnx(session.path.read_bytes(), source=str(session.path)).ops)
    return "int8" if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"} else "fp32"


@dataclass
class Target:
    """What to load: a model file, in a runtime, with its bundle context (if any)."""

    runtime: str
    path: Path
    artifact: Artifact | None = None
    manifest: Manifest | None = None
    golden: dict[str, Any] | None = None
    trusted: bool = False  # already read safely here (see open_session)

    @property
    def label(self) -> str:
        """The artifact's path in the bundle, or the file's name."""
        return self.artifact.path if self.artifact else self.path.name


def build_model(target: Target, session: Session) -> Model:
    """The ``Model`` over ``session``: the bundle's logical tensors, or the plain file's own."""
    if target.manifest is not None and target.artifact is not None:
        m = target.manifest
        index = m.artifacts.index(target.artifact)
        return Model(session, tuple(logical_from_spec(s) for s in m.inputs),
                     tuple(logical_from_spec(s) for s in m.outputs), target.artifact,
                     target.artifact.precision, f"manifest.json artifacts[{index}]")
    return Model(session, tuple(logical_from_raw(t) for t in session.inputs),
                 tuple(logical_from_raw(t) for t in session.outputs), None, _file_precision(session),
                 str(target.path))


def validate(model: Model, target: Target, cpu_reference: Model | None = None) -> ParityResult:
    """Golden parity if the bundle has it for this artifact, else agreement with the CPU on random inputs."""
    if target.golden is not None and target.manifest is not None and target.artifact is not None:
        result = check_golden(model, target.manifest, target.golden, target.artifact)
        if result.ok is not None:
            return result
    tol = tolerance_for(target.manifest, target.artifact, model.info.precision)
    owned = cpu_reference is None
    reference = cpu_reference or build_model(
        target, open_session(target.runtime, target.path, model.info.threads, CPU, trusted=target.trusted))
    try:
        return check_against(model, reference, tol)
    finally:
        if owned:
            reference.close()


def _proven_delegate(target: Target, policy: RuntimePolicy, spec: DelegateSpec) -> Model:
    """``target`` on the delegate ``spec``, after a test inference matched; :class:`DelegateError` otherwise."""
    model = build_model(target, open_session(target.runtime, target.path, policy.threads, spec,
                                             policy.fail_closed, trusted=target.trusted))
    try:
        try:
            result = validate(model, target)
        except (RuntimeError, ValueError) as exc:  # the runtime's own errors from invoke on the delegate
            raise DelegateError(f"delegate {spec.name} failed the test inference on {target.label} "
                                f"({first_line(exc)})") from None
        if not result.ok:
            raise DelegateError(f"delegate {spec.name} runs {target.label} but its outputs do not match: "
                                f"{result.detail}; fix or drop the delegate")
    except DelegateError:
        model.close()
        raise
    return model


def open_model(target: Target, policy: RuntimePolicy, spec: DelegateSpec | None = None) -> Model:
    """Load ``target`` with the policy's delegate, proving the delegate before it counts.

    A delegate that fails to load, fails to run, or runs but does not match the golden vectors is
    given up for the CPU with a WARNING (cause and fix), or raises :class:`DelegateError` when
    ``policy.fail_closed``.
    """
    spec = spec or parse_delegate(policy.delegate)
    reason = None
    if spec.accelerated or spec.kind == "none":
        if not spec.applies_to(target.runtime):
            raise BadInput(f"delegate {spec.name} does not apply to {target.runtime}")
        try:
            return _proven_delegate(target, policy, spec)
        except DelegateError as exc:
            if policy.fail_closed:
                raise
            reason = str(exc)
            log.warning("%s; running %s on the CPU instead (set fail_closed to refuse)", reason, target.label)
    session = open_session(target.runtime, target.path, policy.threads, CPU, trusted=target.trusted)
    return build_model(target, session).with_fallback(reason)
