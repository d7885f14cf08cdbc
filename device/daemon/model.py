"""The model's life cycle: open and verify the bundle, bind it to the sensors, load, canary-check, swap.

A model is used only after its bundle verified and it passed the canary (golden vectors within
tolerance, median latency within the budget). A reload that fails any step keeps the running
model and says why.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.bundle import Bundle, open_bundle
from device.config import Config, locate
from device.daemon.metrics import Metrics
from device.errors import BadInput, BundleError, CheckFailed, OutOfSpace, SpinalError
from device.manifest import TensorSpec
from device.pipeline import (
    ChannelSource,
    InputPlan,
    PostProcessor,
    bind_channels,
    pick_input,
    task_output,
)
from device.signing import load_public_key
from device.systemd import Notifier
from device.units import same_unit

if TYPE_CHECKING:
    from device.runtime.base import RuntimePolicy
    from device.runtime.model import Model

log = logging.getLogger("spinal.daemon")

CANARY_MIN_RUNS = 20
# open_bundle unpacks an archive into a temporary directory named so (tempfile.TemporaryDirectory's prefix).
UNPACK_PREFIX = "spinal-bundle-"

Fingerprint = tuple[int, ...]


@dataclass
class CanaryResult:
    """What the canary measured: golden vectors checked, their worst error, the latency."""

    vectors: int
    max_abs_err: float
    median_ms: float
    p90_ms: float


@dataclass
class ActiveModel:
    """A verified, canary-checked model and everything derived from its manifest."""

    generation: int
    bundle: Bundle
    model: Model
    plan: InputPlan
    sources: tuple[ChannelSource, ...]
    primary: str
    post: PostProcessor
    output_name: str
    fingerprint: Fingerprint | None
    canary: CanaryResult | None
    loaded_unix: float

    @property
    def name(self) -> str:
        """The bundle's model name."""
        return self.bundle.manifest.name

    @property
    def delegate(self) -> str:
        """Where it runs: the delegate or execution provider, else ``cpu``."""
        i = self.model.info
        return i.delegate or i.provider or "cpu"

    def info(self) -> dict[str, Any]:
        """What /healthz, the logs and the ``model_loaded`` event say about this model."""
        i = self.model.info
        out: dict[str, Any] = {
            "name": self.name, "generation": self.generation, "bundle": str(self.bundle.source),
            "runtime": i.runtime, "version": i.version, "artifact": i.artifact, "precision": i.precision,
            "delegate": self.delegate, "threads": i.threads, "fallback_reason": i.fallback_reason,
            "loaded_unix": self.loaded_unix}
        if self.canary:
            out["canary"] = {"vectors": self.canary.vectors, "max_abs_err": self.canary.max_abs_err,
                             "median_ms": round(self.canary.median_ms, 4)}
        return out

    def close(self) -> None:
        """Release the runtime and the bundle's unpacked copy."""
        try:
            self.model.close()
        except Exception as exc:  # closing must not hide the reason of a swap or a shutdown
            log.debug("closing model %s: %s", self.name, exc)
        self.bundle.close()


def bundle_fingerprint(path: Path) -> Fingerprint | None:
    """What changes when a bundle is replaced (inode, size, mtime of the archive or of its manifest)."""
    target = path / "manifest.json" if path.is_dir() else path
    try:
        st = target.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def run_canary(model: Model, bundle: Bundle, budget_ms: float) -> CanaryResult:
    """Golden vectors within tolerance (``device.runtime.parity``), then median latency within budget."""
    from device.runtime.parity import check_golden, golden_inputs

    manifest = bundle.manifest
    if manifest.golden is None:
        raise CheckFailed(f"{bundle.source}: the bundle has no golden vectors, so it cannot be canary-checked; "
                          "rebuild it with spinal convert or set [model] canary = false")
    golden = bundle.load_golden()
    artifact = manifest.artifact(model.info.artifact)
    result = check_golden(model, manifest, golden, artifact)
    if result.ok is None:
        raise CheckFailed(f"{bundle.source}: canary impossible for {artifact.path}: {result.detail}")
    if not result.ok:
        raise CheckFailed(f"{bundle.source}: canary failed on {artifact.path} ({model.info.runtime}): "
                          f"{result.detail}; the model does not compute what the bundle promises on this device")
    feed = golden_inputs(golden, model.inputs, 1)[0]
    times: list[float] = []
    for _ in range(CANARY_MIN_RUNS):
        t = time.perf_counter()
        model.run(feed)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    n = len(times)  # the median (statistics.median's rule), without importing statistics into the daemon
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    if median > budget_ms:
        raise CheckFailed(f"{bundle.source}: canary failed: median latency {median:.3f} ms over {len(times)} runs "
                          f"exceeds [model] latency_budget_ms = {budget_ms:g}")
    return CanaryResult(vectors=result.count, max_abs_err=result.max_abs_err, median_ms=median,
                        p90_ms=times[int(0.9 * (len(times) - 1))])


def _open_configured_bundle(config: Config) -> Bundle:
    mc = config.model
    workdir = config.state_dir if config.state_dir and config.state_dir.is_dir() else None
    try:
        return open_bundle(mc.bundle, workdir=workdir, trusted_keys=[load_public_key(p) for p in mc.trusted_keys],
                           require_signature=mc.require_signature)
    except OSError as exc:  # e.g. the unpack directory cannot be made
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = workdir or Path(tempfile.gettempdir())
            raise OutOfSpace(f"{where}: no space left on device while opening {mc.bundle}; free space there, "
                             "then start again") from None
        raise


def remove_unpacked_leftovers(state_dir: Path) -> int:
    """Remove the unpacked archive copies a killed daemon left in ``state_dir``; how many there were.

    A running daemon unpacks its ``.spinal`` archive into ``state_dir/spinal-bundle-*`` and removes it
    when the model is swapped or at shutdown; SIGKILL or a power cut leaves it behind."""
    removed = 0
    for leftover in state_dir.glob(f"{UNPACK_PREFIX}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    if removed:
        log.info("%s: removed %d unpacked bundle copies left by an earlier run", state_dir, removed)
    return removed


def _check_units(config: Config, bundle: Bundle, spec: TensorSpec, sources: tuple[ChannelSource, ...]) -> None:
    """Each model channel's unit (from the manifest) must be the unit its sensor channel delivers, after
    :func:`device.units.normalize_unit` (``C`` and ``°C`` are the same; ``hPa`` and ``Pa`` are not)."""
    from device.daemon.sampler import describe_sensor

    if not spec.units:
        return
    units = spec.units if len(spec.units) == len(sources) else spec.units * len(sources)
    index = {s.id: i for i, s in enumerate(config.sensors)}
    for want, src, name in zip(units, sources, spec.channels or [str(s) for s in sources], strict=False):
        have = describe_sensor(config.sensor(src.sensor), index[src.sensor]).units.get(src.channel)
        if have is not None and not same_unit(want, have):
            raise BadInput(f"{locate(config, 'model', 'bundle')}: model {bundle.manifest.name!r} expects channel "
                           f"{name!r} in {want!r}, but sensor {src.sensor!r} delivers {src.channel} in {have!r}; "
                           "rebuild the bundle for this unit or bind another channel in [binding]")


def _bind(config: Config, bundle: Bundle, channels: dict[str, tuple[str, ...]]) -> tuple[
        InputPlan, tuple[ChannelSource, ...]]:
    """The input plan and the sensor channels feeding it; the primary sensor's rate must match the model's."""
    manifest = bundle.manifest
    try:
        spec = pick_input(manifest, config.model.input)
    except BadInput as exc:
        raise BadInput(f"{locate(config, 'model', 'input')}: {exc}") from None
    plan = InputPlan.for_input(spec)
    model_channels = spec.channels or tuple(f"ch{i}" for i in range(plan.channels))
    if len(model_channels) != plan.channels:
        raise BundleError(f"{bundle.source}: input {spec.name!r} names {len(model_channels)} channels for "
                          f"{plan.channels} channel slots")
    try:
        offered: dict[str, Sequence[str]] = dict(channels)
        sources = bind_channels(model_channels, offered, config.binding, where=locate(config, "binding"))
    except BadInput as exc:  # a model channel no sensor has: the fix is in [binding] (or the bundle)
        text = str(exc)
        raise BadInput(text if text.startswith(str(config.source)) else f"{locate(config, 'binding')}: {text}") \
            from None
    primary = sources[0].sensor
    rate = config.sensor(primary).rate_hz
    if spec.sample_rate_hz and abs(rate - spec.sample_rate_hz) > 0.01 * spec.sample_rate_hz:
        idx = [s.id for s in config.sensors].index(primary)
        raise BadInput(f"{locate(config, 'sensors', idx, 'rate_hz')}: sensor {primary!r} samples at {rate:g} Hz but "
                       f"model {manifest.name!r} expects {spec.sample_rate_hz:g} Hz; set rate_hz = "
                       f"{spec.sample_rate_hz:g}")
    _check_units(config, bundle, spec, sources)
    return plan, sources


def _policy(config: Config) -> RuntimePolicy:
    from device.runtime import RuntimePolicy

    mc = config.model
    return RuntimePolicy(
        runtime=mc.runtime, artifact=None if mc.artifact == "auto" else mc.artifact, threads=mc.threads,
        delegate=None if mc.delegate == "auto" else mc.delegate, fail_closed=mc.fail_closed,
        cache_dir=config.state_dir / "cache" if config.state_dir else None)


def _probe_ahead(config: Config) -> contextlib.AbstractContextManager[None]:
    """The probe child the bundle's TFLite files new to this device will need, started before the bundle is
    unpacked (:mod:`device.runtime.ahead`); nothing when the policy is refused (``_load`` says why)."""
    from device.runtime.ahead import probe_ahead

    try:
        return probe_ahead(config.model.bundle, _policy(config))
    except SpinalError:
        return contextlib.nullcontext()


def _load(config: Config, bundle: Bundle) -> Model:
    from device.runtime import load_model

    mc = config.model
    known = [a.path for a in bundle.manifest.artifacts]
    choices = {*known, *(a.precision for a in bundle.manifest.artifacts), "auto"}
    if mc.artifact not in choices:
        raise BadInput(f"{locate(config, 'model', 'artifact')}: {mc.artifact!r} is neither an artifact of "
                       f"{bundle.source} nor one of its precisions (artifacts: {', '.join(known)}; or \"auto\")")
    try:
        return load_model(bundle, _policy(config))
    except BundleError:
        raise
    except BadInput as exc:  # no artifact for this runtime/delegate, a runtime not installed: the [model] keys
        text = str(exc)
        raise BadInput(text if text.startswith(str(config.source)) else f"{locate(config, 'model')}: {text}") \
            from None


def load_candidate(config: Config, channels: dict[str, tuple[str, ...]], generation: int) -> ActiveModel:
    """Open and verify the configured bundle, bind it to the sensors, load it and canary-check it."""
    fingerprint = bundle_fingerprint(config.model.bundle)
    with _probe_ahead(config):
        return _load_candidate(config, channels, generation, fingerprint)


def _load_candidate(config: Config, channels: dict[str, tuple[str, ...]], generation: int,
                    fingerprint: Fingerprint | None) -> ActiveModel:
    bundle = _open_configured_bundle(config)
    try:
        plan, sources = _bind(config, bundle, channels)
        out_spec = task_output(bundle.manifest)
        post = PostProcessor(bundle.manifest.task, out_spec, config.postprocess)
        model = _load(config, bundle)
        try:
            canary = run_canary(model, bundle, config.model.latency_budget_ms) if config.model.canary else None
        except BaseException:
            model.close()
            raise
        return ActiveModel(generation=generation, bundle=bundle, model=model, plan=plan, sources=sources,
                           primary=sources[0].sensor, post=post, output_name=out_spec.name, fingerprint=fingerprint,
                           canary=canary, loaded_unix=time.time())
    except BaseException:
        bundle.close()
        raise


EventSink = Callable[[str, dict[str, Any]], None]


class ModelSlot:
    """The active model and its swaps: reload (verify, load, canary) and the atomic hand-over.

    ``lock`` is held by inference while it runs the model; the swap takes it. ``install`` is
    called under the lock with the new model (the router re-cuts its windows for it).
    """

    def __init__(self, config: Config, channels: dict[str, tuple[str, ...]], metrics: Metrics,
                 notifier: Notifier, on_event: EventSink, install: Callable[[ActiveModel], None]) -> None:
        self.config = config
        self.channels = channels
        self.metrics = metrics
        self.notifier = notifier
        self.on_event = on_event
        self.install = install
        self.lock = threading.Lock()
        self.active: ActiveModel | None = None
        self.generation = 0
        self.last_reload: dict[str, Any] | None = None
        self.failed_fingerprint: Fingerprint | None = None
        self._pending_fingerprint: Fingerprint | None = None

    def _activate(self, cand: ActiveModel) -> ActiveModel | None:
        with self.lock:
            old, self.active = self.active, cand
            self.install(cand)
        i = cand.model.info
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(cand.name, i.runtime, i.version, i.artifact, i.precision,
                                       cand.delegate).set(1)
        return old

    def _failed(self, exc: Exception, reason: str, fingerprint: Fingerprint | None, startup: bool) -> bool:
        self.failed_fingerprint = fingerprint
        keep = self.active
        why = str(exc) if isinstance(exc, SpinalError) else f"{type(exc).__name__}: {exc}"
        kept = f"keeping {keep.name} (generation {keep.generation})" if keep else "no model running"
        expected = isinstance(exc, SpinalError | OSError | ValueError | RuntimeError)
        log.error("reload failed: %s; %s", why, kept, exc_info=None if expected else exc)
        self.metrics.reloads.labels("failed").inc()
        self.last_reload = {"result": "failed", "reason": reason, "error": why, "at_unix": time.time()}
        self.on_event("reload_failed", {"error": why, "kept": keep.info() if keep else None})
        if startup:  # nothing to keep: the start fails with the reason (and its exit code)
            if isinstance(exc, SpinalError):
                raise exc
            raise CheckFailed(f"{self.config.model.bundle}: cannot start: {why}") from None
        self.notifier.notify("READY=1", f"STATUS=reload failed, {kept}: {why[:200]}")
        return False

    def reload(self, reason: str, startup: bool = False, status_line: Callable[[], str] = str) -> bool:
        """Load, verify and canary the bundle; swap it in atomically or keep the running model."""
        if not startup:
            self.notifier.reloading()
        self.notifier.status(f"reloading ({reason})")
        log.info("reloading %s (%s)", self.config.model.bundle, reason)
        fingerprint = bundle_fingerprint(self.config.model.bundle)
        try:
            cand = load_candidate(self.config, self.channels, self.generation + 1)
        except Exception as exc:  # any failure keeps the running model: a bad bundle must not stop the device
            return self._failed(exc, reason, fingerprint, startup)
        self.generation = cand.generation
        old = self._activate(cand)
        if old is not None:
            old.close()
        self.failed_fingerprint = None
        log.info("model %s generation %d active: %s", cand.name, cand.generation, cand.model.info.describe())
        self.metrics.reloads.labels("ok").inc()
        self.last_reload = {"result": "ok", "reason": reason, "generation": cand.generation, "at_unix": time.time()}
        self.on_event("model_loaded", cand.info())
        if not startup:
            self.notifier.notify("READY=1", f"STATUS={status_line()}")
        return True

    def bundle_changed(self) -> bool:
        """Whether the bundle file was replaced (and has been stable for one poll) since the last load."""
        sig = bundle_fingerprint(self.config.model.bundle)
        active_sig = self.active.fingerprint if self.active else None
        if sig is None or sig == active_sig or sig == self.failed_fingerprint:
            self._pending_fingerprint = None
            return False
        if sig != self._pending_fingerprint:  # wait one more poll: the file must be stable
            self._pending_fingerprint = sig
            return False
        self._pending_fingerprint = None
        return True

    def close(self) -> None:
        """Release the active model."""
        if self.active is not None:
            self.active.close()
