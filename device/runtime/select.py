"""Choosing and loading: ``load_model(source, policy) -> Model``.

``source`` is an open :class:`~device.bundle.Bundle`, a bundle path (directory or ``.spinal``), or a
plain ``.onnx``/``.tflite`` file (then the logical tensors are the file's own).

With ``runtime="auto"`` the candidates are every (runtime, artifact) pair this machine can run.
If this device has measured them for this bundle before (a cache keyed by device and bundle
hash), the measurement decides; otherwise, with ``autotune``, each candidate is loaded, checked
against the golden vectors and timed briefly, and the result is cached. The pick is the fastest
candidate that passed parity, except that a more accurate one (fp32 > fp16 > int8 > int8-io) is
preferred when it is within a margin of the fastest: 10% on CPUs with int8 dot-product
instructions (ARM ``asimddp``, x86 ``avx512_vnni``/``avx_vnni``/``amx_int8``), 25% on CPUs without
them (e.g. Cortex-A72), where int8 gains are small and fragile. Without a measurement the CPU
features alone order the precisions.

A delegate counts only after a test inference on it matched the golden vectors (or, for a plain
file, the CPU on random inputs). Otherwise the model runs on the CPU with a WARNING naming the
cause and the fix, or, with ``fail_closed``, :class:`DelegateError` is raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.bundle import Bundle, is_bundle_path, open_bundle
from device.errors import BadInput, BundleError, MissingDependency, SpinalError
from device.manifest import Artifact, Manifest
from device.modelfile import check_model_file, ensure_tflite_loadable
from device.runtime.base import (
    INSTALL_HINT,
    RUNTIME_FORMAT,
    RUNTIME_MODULE,
    RUNTIMES,
    DelegateError,
    RuntimePolicy,
    Session,
    first_line,
    log,
)
from device.runtime.delegates import DelegateSpec, parse_delegate
from device.runtime.model import Model, logical_from_raw, logical_from_spec
from device.runtime.parity import ParityResult, check_against, check_golden, tolerance_for

PRECISION_RANK = {"fp32": 0, "fp16": 1, "int8": 2, "int8-io": 3}
RUNTIME_RANK = {"litert": 0, "onnxruntime": 1, "tflite-runtime": 2}
CACHE_NAME = "autotune.json"
CACHE_ENTRIES = 64
MEASURE_SECONDS = 0.3  # all candidates together
MEASURE_ROUNDS = 5
MEASURE_RUNS = 200  # per candidate and round, at most
_CPU = DelegateSpec(kind="cpu", name="cpu", provider="CPUExecutionProvider")


# --------------------------------------------------------------------------------------------
# What is installed, what the CPU can do


def installed_runtimes() -> dict[str, str]:
    """The runtimes importable here, with their versions (without importing them)."""
    from importlib import metadata

    found = {}
    for name in RUNTIMES:
        if importlib.util.find_spec(RUNTIME_MODULE[name]) is None:
            continue
        try:
            found[name] = _backend(name).version()
        except metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


@dataclass(frozen=True)
class CpuFeatures:
    """What matters about this CPU for choosing int8 or float artifacts."""

    arch: str
    model: str
    flags: frozenset[str]
    cores: int

    @property
    def int8_dot(self) -> bool:
        """Whether the CPU has int8 dot-product instructions (int8 then reliably beats fp32)."""
        return bool(self.flags & {"asimddp", "avx512_vnni", "avx_vnni", "amx_int8", "i8mm"})


_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
              "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1"}


# aarch64 AT_HWCAP / AT_HWCAP2 bits (linux/arch/arm64/include/uapi/asm/hwcap.h) of the flags that matter here.
_HWCAP_ASIMDDP = 1 << 20
_HWCAP2_I8MM = 1 << 13


def arm_hwcap_flags(hwcap: int, hwcap2: int) -> set[str]:
    """The int8 dot-product flags in aarch64's auxiliary vector (what /proc/cpuinfo's Features would say)."""
    return {name for name, present in (("asimddp", hwcap & _HWCAP_ASIMDDP), ("i8mm", hwcap2 & _HWCAP2_I8MM))
            if present}


def _auxv_flags(arch: str) -> set[str]:
    """CPU flags from ``getauxval`` where /proc/cpuinfo cannot be read (systemd's ProcSubset=pid hides it)."""
    if arch not in ("aarch64", "arm64"):
        return set()
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        return arm_hwcap_flags(getauxval(16), getauxval(26))  # AT_HWCAP, AT_HWCAP2
    except (OSError, AttributeError):
        return set()


def cpu_features(cpuinfo: str | None = None, arch: str | None = None) -> CpuFeatures:
    """Parse ``/proc/cpuinfo`` (or the given text) for the CPU model and feature flags."""
    auxv: set[str] = set()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
            auxv = _auxv_flags(arch or platform.machine())
    flags: set[str] = set(auxv)
    names: dict[str, str] = {}
    cores = 0
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cores += 1
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "cpu part", "model", "hardware") and value:
            names.setdefault(key, value)
    model = names.get("model name") or ""
    if not model and "cpu part" in names:  # ARM: the core, and the board when the kernel says (Raspberry Pi)
        part = names["cpu part"].lower()
        model = _ARM_PARTS.get(part, f"ARM part {part}")
        board = names.get("model", "")
        model = f"{model} ({board})" if board and not board.isdigit() else model
    return CpuFeatures(arch=arch or platform.machine(), model=model or names.get("hardware", "unknown"),
                       flags=frozenset(flags), cores=cores or os.cpu_count() or 1)


def device_key(features: CpuFeatures | None = None, runtimes: dict[str, str] | None = None) -> str:
    """A short id of this device for the measurement cache: CPU, its features, cores and runtime versions."""
    features = features or cpu_features()
    runtimes = installed_runtimes() if runtimes is None else runtimes
    data = json.dumps([features.arch, features.model, sorted(features.flags), features.cores, runtimes])
    return hashlib.sha256(data.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Backends


def _backend(name: str) -> Any:
    if name == "litert":
        from device.runtime import litert

        return litert
    if name == "tflite-runtime":
        from device.runtime import tflite

        return tflite
    from device.runtime import onnx

    return onnx


def open_session(runtime: str, path: Path, threads: int | None, delegate: DelegateSpec,
                 fail_closed: bool = False) -> Session:
    """Load one model file in one runtime (no fallback, no validation)."""
    if importlib.util.find_spec(RUNTIME_MODULE[runtime]) is None:
        raise MissingDependency(f"runtime {runtime} is not installed; install it with: {INSTALL_HINT[runtime]}")
    if runtime == "onnxruntime":
        return _backend(runtime).open_session(path, threads, delegate, fail_closed)  # type: ignore[no-any-return]
    # The TFLite runtimes can crash (SIGSEGV) on a corrupt file: a child process reads it first.
    ensure_tflite_loadable(path, runtime)  # each runtime: its own first contact in a child
    return _backend(runtime).open_session(path, threads, delegate)  # type: ignore[no-any-return]


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

    @property
    def label(self) -> str:
        return self.artifact.path if self.artifact else self.path.name


def _build(target: Target, session: Session) -> Model:
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
    reference = cpu_reference or _build(target, open_session(target.runtime, target.path, model.info.threads, _CPU))
    try:
        return check_against(model, reference, tol)
    finally:
        if owned:
            reference.close()


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
        model = None
        try:
            model = _build(target, open_session(target.runtime, target.path, policy.threads, spec, policy.fail_closed))
            try:
                result = validate(model, target)
            except (RuntimeError, ValueError) as exc:  # the runtime's own errors from invoke on the delegate
                raise DelegateError(f"delegate {spec.name} failed the test inference on {target.label} "
                                    f"({first_line(exc)})") from None
            if not result.ok:
                raise DelegateError(f"delegate {spec.name} runs {target.label} but its outputs do not match: "
                                    f"{result.detail}; fix or drop the delegate")
            return model
        except DelegateError as exc:
            if model is not None:
                model.close()
            if policy.fail_closed:
                raise
            reason = str(exc)
            log.warning("%s; running %s on the CPU instead (set fail_closed to refuse)", reason, target.label)
    return _build(target, open_session(target.runtime, target.path, policy.threads, _CPU)).with_fallback(reason)


# --------------------------------------------------------------------------------------------
# Candidates and the pick


@dataclass
class Measurement:
    """One candidate as measured by ``auto`` (and cached)."""

    runtime: str
    artifact: str
    precision: str
    p50_us: float | None
    parity: bool | None
    error: str | None = None


@dataclass
class Selection:
    """How ``load_model`` chose (attached to the model as ``model.selection``)."""

    mode: str  # explicit | single | cached | measured | prior
    device: str = ""
    measurements: list[Measurement] = field(default_factory=list)


def _matches(artifact: Artifact, wanted: str | None) -> bool:
    return wanted is None or artifact.path == wanted or artifact.precision == wanted


def candidates(manifest: Manifest, policy: RuntimePolicy, installed: dict[str, str],
               spec: DelegateSpec) -> list[tuple[str, Artifact]]:
    """Every (runtime, artifact) pair the policy allows and this machine can run, best-guess order."""
    if policy.artifact is not None and not any(_matches(a, policy.artifact) for a in manifest.artifacts):
        have = ", ".join(f"{a.path} ({a.precision})" for a in manifest.artifacts)
        raise BadInput(f"artifact {policy.artifact!r} is not in the bundle (it has {have})")
    runtimes = [policy.runtime] if policy.runtime != "auto" else [r for r in RUNTIMES if r in installed]
    if policy.runtime == "auto" and "litert" in runtimes and "tflite-runtime" in runtimes:
        runtimes.remove("tflite-runtime")  # the fallback is only for machines without LiteRT
    want_tpu = spec.kind == "edgetpu"
    out = []
    for art in manifest.artifacts:
        if not _matches(art, policy.artifact) or (art.edgetpu and not want_tpu):
            continue
        out.extend((rt, art) for rt in runtimes if RUNTIME_FORMAT[rt] == art.format and spec.applies_to(rt))
    if want_tpu and any(a.edgetpu for _, a in out):
        out = [c for c in out if c[1].edgetpu] + [c for c in out if not c[1].edgetpu]
    return out


def _no_candidates(manifest: Manifest, policy: RuntimePolicy, installed: dict[str, str], spec: DelegateSpec) -> Any:
    formats = sorted({a.format for a in manifest.artifacts if _matches(a, policy.artifact)})
    if policy.runtime != "auto" and not spec.applies_to(policy.runtime):
        takes = "providers (cuda, tensorrt, openvino ...)" if policy.runtime == "onnxruntime" else (
            "TFLite delegates (edgetpu, gpu, a library path)")
        return BadInput(f"delegate {spec.name} does not apply to {policy.runtime}, which takes {takes}")
    if policy.runtime != "auto" and policy.runtime not in installed:
        return MissingDependency(f"runtime {policy.runtime} is not installed; install it with: "
                                 f"{INSTALL_HINT[policy.runtime]}")
    needed = [r for r in RUNTIMES if RUNTIME_FORMAT[r] in formats]
    if not any(r in installed for r in needed):
        hints = "; ".join(INSTALL_HINT[r] for r in needed if r != "tflite-runtime")
        return MissingDependency(f"no runtime here can run the bundle's {'/'.join(formats)} artifacts; "
                                 f"install: {hints}")
    return BadInput(f"no artifact matches runtime={policy.runtime} artifact={policy.artifact} delegate={spec.name} "
                    f"(artifacts: {', '.join(f'{a.path} ({a.format})' for a in manifest.artifacts)})")


def pick(measured: list[Measurement], features: CpuFeatures) -> Measurement | None:
    """The fastest candidate that passed parity, or a more accurate one within the CPU's margin of it."""
    usable = [m for m in measured if m.parity is not False and m.p50_us is not None and m.error is None]
    if not usable:
        return None
    fastest = min(m.p50_us for m in usable)  # type: ignore[type-var]
    margin = 0.10 if features.int8_dot else 0.25
    close = [m for m in usable if m.p50_us <= fastest * (1 + margin)]  # type: ignore[operator]
    return min(close, key=lambda m: (PRECISION_RANK.get(m.precision, 9), m.p50_us, RUNTIME_RANK[m.runtime]))


def prior_order(cands: list[tuple[str, Artifact]], features: CpuFeatures) -> list[tuple[str, Artifact]]:
    """Without measurements: int8 first on CPUs with dot-product instructions, float first otherwise."""
    order = ["int8", "fp32", "fp16", "int8-io"] if features.int8_dot else ["fp32", "fp16", "int8", "int8-io"]
    return sorted(cands, key=lambda c: (RUNTIME_RANK[c[0]], order.index(c[1].precision)
                                        if c[1].precision in order else 9))


def _cache_path(policy: RuntimePolicy) -> Path:
    base = policy.cache_dir or os.environ.get("SPINAL_CACHE_DIR") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spinal")
    return Path(base) / CACHE_NAME


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _entry_time(entry: Any) -> float:
    stamp = entry.get("time") if isinstance(entry, dict) else None
    return float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else 0.0


def _cached_measurements(entry: Any) -> list[Measurement]:
    """The measurements of a cache entry; ``[]`` when it is not what :func:`_write_cache` wrote (edited, damaged)."""
    try:
        measured = [Measurement(**m) for m in entry["candidates"]]
    except (TypeError, KeyError):
        return []
    for m in measured:
        timed = m.p50_us is None or (isinstance(m.p50_us, int | float) and not isinstance(m.p50_us, bool)
                                     and m.p50_us > 0)
        if (m.runtime not in RUNTIME_RANK or not isinstance(m.artifact, str) or not isinstance(m.precision, str)
                or not timed or m.parity not in (True, False, None) or not isinstance(m.error, str | None)):
            return []
    return measured


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    data = _read_cache(path)
    data[key] = entry
    while len(data) > CACHE_ENTRIES:
        data.pop(min(data, key=lambda k: _entry_time(data[k])))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autotune.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the half-written temp file; the error itself is reported below
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.info("cannot write the runtime cache %s (%s); auto will measure again next time", path, exc)


def bundle_hash(manifest: Manifest) -> str:
    """A hash of the bundle (its manifest lists every file's sha256)."""
    return hashlib.sha256(manifest.to_json().encode()).hexdigest()


def measure_all(targets: list[Target], policy: RuntimePolicy, spec: DelegateSpec) -> list[Measurement]:
    """``auto``'s micro-benchmark: load every candidate, check its parity, then time them in interleaved rounds.

    Rounds alternate between the candidates so that a burst of other load on the CPU hits them all
    alike; each candidate's figure is the median of its per-round medians.
    """
    from device.runtime.parity import golden_inputs, random_inputs

    results: list[Measurement | None] = []
    live: list[tuple[int, Model, dict[str, Any]]] = []
    strict = RuntimePolicy(runtime="auto", threads=policy.threads, delegate=policy.delegate, fail_closed=True)
    try:
        for target in targets:
            art = target.artifact
            assert art is not None
            try:
                model = open_model(target, dataclasses.replace(strict, runtime=target.runtime), spec)
            except SpinalError as exc:  # this candidate cannot run here (e.g. a file tflite-runtime cannot load)
                if not isinstance(exc, DelegateError | BadInput):
                    log.warning("auto: %s on %s cannot be used: %s", art.path, target.runtime, exc)
                results.append(Measurement(target.runtime, art.path, art.precision, None, None, error=str(exc)))
                continue
            results.append(Measurement(target.runtime, art.path, art.precision, None, None))
            live.append((len(results) - 1, model, {}))  # from here on, the finally block closes it
            if target.golden is not None and target.manifest is not None:
                results[-1].parity = check_golden(model, target.manifest, target.golden, art).ok  # type: ignore[union-attr]
            feed = (golden_inputs(target.golden, model.inputs, 1)[0] if target.golden is not None
                    else random_inputs(model.inputs, 1)[0])
            live[-1] = (len(results) - 1, model, feed)
            for _ in range(3):
                model.run(feed)
        rounds: dict[int, list[float]] = {i: [] for i, _, _ in live}
        per_round = MEASURE_SECONDS / MEASURE_ROUNDS / max(1, len(live))
        for _ in range(MEASURE_ROUNDS):
            for i, model, feed in live:
                times = []
                end = time.perf_counter() + per_round
                while len(times) < MEASURE_RUNS and (len(times) < 5 or time.perf_counter() < end):
                    t0 = time.perf_counter_ns()
                    model.run(feed)
                    times.append(time.perf_counter_ns() - t0)
                times.sort()
                rounds[i].append(times[len(times) // 2] / 1000)
        for i, _, _ in live:
            values = sorted(rounds[i])
            result = results[i]
            assert result is not None
            result.p50_us = values[len(values) // 2]
    finally:
        for _, model, _ in live:
            model.close()
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------------------------
# The entry point


def load_model(source: Bundle | Path | str, policy: RuntimePolicy | None = None) -> Model:
    """Load a bundle (open or by path) or a plain model file according to ``policy``."""
    policy = policy or RuntimePolicy()
    if isinstance(source, Bundle):
        return _load_bundle(source, policy)
    path = Path(source)
    if is_bundle_path(path):
        with open_bundle(path) as bundle:
            return _load_bundle(bundle, policy)
    return _load_file(path, policy)


def _load_file(path: Path, policy: RuntimePolicy) -> Model:
    fmt = check_model_file(path)
    installed = installed_runtimes()
    if policy.runtime != "auto":
        if RUNTIME_FORMAT[policy.runtime] != fmt:
            raise BadInput(f"{path}: a {fmt} file cannot run in {policy.runtime}")
        runtime = policy.runtime
    else:
        options = [r for r in RUNTIMES if RUNTIME_FORMAT[r] == fmt]
        runtime = next((r for r in options if r in installed), options[0])
    model = open_model(Target(runtime=runtime, path=path), policy)
    model.selection = Selection(mode="explicit" if policy.runtime != "auto" else "single")
    return model


def _load_bundle(bundle: Bundle, policy: RuntimePolicy) -> Model:
    manifest = bundle.manifest
    spec = parse_delegate(policy.delegate)
    installed = installed_runtimes()
    cands = candidates(manifest, policy, installed, spec)
    if policy.runtime != "auto" and policy.runtime not in installed:
        raise _no_candidates(manifest, policy, installed, spec)
    cands = [c for c in cands if c[0] in installed]
    if not cands:
        raise _no_candidates(manifest, policy, installed, spec)
    golden = bundle.load_golden() if manifest.golden is not None else None

    def target(runtime: str, art: Artifact) -> Target:
        return Target(runtime=runtime, path=bundle.path_of(art.path), artifact=art, manifest=manifest, golden=golden)

    features = cpu_features()
    selection = Selection(mode="explicit" if policy.runtime != "auto" and policy.artifact else "single")
    chosen = cands[0]
    if len(cands) > 1:
        chosen, selection = _auto(cands, policy, spec, features, installed, manifest, target)
    runtime, art = chosen
    if not art.edgetpu:
        model = open_model(target(runtime, art), policy, spec)
    else:
        # An Edge TPU file cannot run on the CPU at all: if the TPU fails, fall back to the best plain artifact.
        try:
            model = open_model(target(runtime, art), dataclasses.replace(policy, fail_closed=True), spec)
        except DelegateError as exc:
            rest = [c for c in cands if not c[1].edgetpu]
            if policy.fail_closed:
                raise
            if not rest:
                raise BundleError(f"{bundle.source}: the Edge TPU is unusable ({exc}) and the bundle has no plain "
                                  "artifact to fall back to") from None
            runtime, art = prior_order(rest, features)[0]
            log.warning("%s; running %s on the CPU instead (set fail_closed to refuse)", exc, art.path)
            model = open_model(target(runtime, art), policy, _CPU).with_fallback(str(exc))
    model.selection = selection
    log.info("running %s", model.info.describe())
    return model


def _auto(cands: list[tuple[str, Artifact]], policy: RuntimePolicy, spec: DelegateSpec, features: CpuFeatures,
          installed: dict[str, str], manifest: Manifest, target: Any) -> tuple[tuple[str, Artifact], Selection]:
    dev = device_key(features, installed)
    key = f"{dev}:{bundle_hash(manifest)[:16]}:threads={policy.threads or 0}:delegate={spec.name}"
    path = _cache_path(policy)
    wanted = {(rt, a.path) for rt, a in cands}
    cached = _read_cache(path).get(key)
    measured: list[Measurement] = []
    mode = "prior"
    if cached:
        measured = _cached_measurements(cached)
        if {(m.runtime, m.artifact) for m in measured} >= wanted:
            mode = "cached"
        else:
            measured = []
    if not measured and policy.autotune:
        measured = measure_all([target(rt, a) for rt, a in cands], policy, spec)
        mode = "measured"
        _write_cache(path, key, {"time": time.time(), "candidates": [vars(m) for m in measured]})
    measured = [m for m in measured if (m.runtime, m.artifact) in wanted]
    best = pick(measured, features) if measured else None
    if best is not None:
        chosen = next(c for c in cands if (c[0], c[1].path) == (best.runtime, best.artifact))
    else:
        chosen = prior_order(cands, features)[0]
        mode = "prior" if mode != "measured" else "prior (no candidate passed)"
    return chosen, Selection(mode=mode, device=dev, measurements=measured)
