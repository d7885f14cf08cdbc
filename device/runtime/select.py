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

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.bundle import Bundle, is_bundle_path, open_bundle
from device.errors import BadInput, BundleError, MissingDependency, SpinalError
from device.manifest import Artifact, Manifest
from device.modelfile import check_model_file
from device.runtime.autotune import (
    CACHE_ENTRIES,
    CONFIRM_ROUNDS,
    CONFIRM_SECONDS,
    MEASURE_ROUNDS,
    MEASURE_SECONDS,
    PRECISION_RANK,
    Measurement,
    bundle_hash,
    cache_path,
    cached_measurements,
    measure_all,
    pick,
    read_cache,
    recorded_ranking,
    write_cache,
)
from device.runtime.base import (
    INSTALL_HINT,
    RUNTIME_FORMAT,
    RUNTIME_RANK,
    RUNTIMES,
    DelegateError,
    RuntimePolicy,
    log,
)
from device.runtime.cpu import CpuFeatures, arm_hwcap_flags, cpu_features, device_key, installed_runtimes
from device.runtime.delegates import DelegateSpec, parse_delegate
from device.runtime.loading import CPU, Target, open_model, open_session, validate
from device.runtime.model import Model

__all__ = [
    "CACHE_ENTRIES", "PRECISION_RANK", "RUNTIME_RANK", "CpuFeatures", "Measurement", "Selection", "Target",
    "arm_hwcap_flags", "candidates", "cpu_features", "device_key", "installed_runtimes", "load_model",
    "open_model", "open_session", "pick", "prior_order", "validate",
]

# --------------------------------------------------------------------------------------------
# Candidates and the pick


@dataclass
class Selection:
    """How ``load_model`` chose (attached to the model as ``model.selection``)."""

    mode: str  # explicit | single | cached | confirmed | measured | prior
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
    out: list[tuple[str, Artifact]] = []
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


def prior_order(cands: list[tuple[str, Artifact]], features: CpuFeatures) -> list[tuple[str, Artifact]]:
    """Without measurements: int8 first on CPUs with dot-product instructions, float first otherwise."""
    order = ["int8", "fp32", "fp16", "int8-io"] if features.int8_dot else ["fp32", "fp16", "int8", "int8-io"]
    return sorted(cands, key=lambda c: (RUNTIME_RANK[c[0]], order.index(c[1].precision)
                                        if c[1].precision in order else 9))


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
    """:func:`_select_and_load`, with errors naming the bundle the user gave, not its private copy."""
    try:
        model = _select_and_load(bundle, policy)
    except SpinalError as exc:
        exc.args = (bundle.shown(str(exc)), *exc.args[1:])
        raise
    if model.selection is not None:
        for m in model.selection.measurements:
            m.error = bundle.shown(m.error) if m.error else m.error
    return model


def _select_and_load(bundle: Bundle, policy: RuntimePolicy) -> Model:
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
            model = open_model(target(runtime, art), policy, CPU).with_fallback(str(exc))
    model.selection = selection
    log.info("running %s", model.info.describe())
    return model


def _auto(cands: list[tuple[str, Artifact]], policy: RuntimePolicy, spec: DelegateSpec, features: CpuFeatures,
          installed: dict[str, str], manifest: Manifest, target: Any) -> tuple[tuple[str, Artifact], Selection]:
    dev = device_key(features, installed)
    key = f"{dev}:{bundle_hash(manifest)[:16]}:threads={policy.threads or 0}:delegate={spec.name}"
    path = cache_path(policy)
    wanted = {(rt, a.path) for rt, a in cands}
    measured, mode = _from_cache(read_cache(path).get(key), wanted), "cached"
    if not measured and policy.autotune:
        measured, mode = _confirm_recorded(cands, policy, spec, features, manifest, target), "confirmed"
        if not measured:
            measured, mode = measure_all([target(rt, a) for rt, a in cands], policy, spec, MEASURE_SECONDS,
                                          MEASURE_ROUNDS, features), "measured"
        entry = {"time": time.time(), "candidates": [vars(m) for m in measured]}
        write_cache(path, key, {**entry, "confirmed": True} if mode == "confirmed" else entry)
    if not measured:
        mode = "prior"
    measured = [m for m in measured if (m.runtime, m.artifact) in wanted]
    best = pick(measured, features) if measured else None
    if best is not None:
        chosen = next(c for c in cands if (c[0], c[1].path) == (best.runtime, best.artifact))
    else:
        chosen = prior_order(cands, features)[0]
        mode = "prior" if mode != "measured" else "prior (no candidate passed)"
    return chosen, Selection(mode=mode, device=dev, measurements=measured)


def _from_cache(entry: Any, wanted: set[tuple[str, str]]) -> list[Measurement]:
    """A cache entry's measurements if they still fit: all candidates measured, or a confirmed recorded winner."""
    measured = cached_measurements(entry) if entry else []
    have = {(m.runtime, m.artifact) for m in measured}
    confirmed = isinstance(entry, dict) and entry.get("confirmed") is True
    return measured if have >= wanted or (confirmed and have and have <= wanted) else []


def _confirm_recorded(cands: list[tuple[str, Artifact]], policy: RuntimePolicy, spec: DelegateSpec,
                      features: CpuFeatures, manifest: Manifest, target: Any) -> list[Measurement]:
    """The converter's winner for this CPU family, confirmed by one short timing against the best alternative of
    another precision (both checked against the golden vectors); ``[]`` when there is no record or the
    alternative wins here (then everything is measured)."""
    ranking = recorded_ranking(manifest, features, policy.threads, spec, cands)
    winner = pick(ranking, features) if ranking else None
    if winner is None:
        return []
    others = sorted((m for m in ranking if m.precision != winner.precision), key=lambda m: m.p50_us or 0.0)
    if not others:
        return []
    pair = [winner, others[0]]
    by_key = {(rt, a.path): a for rt, a in cands}
    measured = measure_all([target(m.runtime, by_key[(m.runtime, m.artifact)]) for m in pair], policy, spec,
                           CONFIRM_SECONDS, CONFIRM_ROUNDS, features)
    best = pick(measured, features)
    if best is None or (best.runtime, best.artifact) != (winner.runtime, winner.artifact):
        log.info("auto: the converter's pick %s is not confirmed here; measuring every candidate", winner.artifact)
        return []
    return measured
