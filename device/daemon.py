"""``spinal run``: the composition root that ties sensors, the model and the sinks together.

Threads and what they own:

- one **sampler** per sensor: reads its driver on an absolute monotonic schedule (tick ``k`` is
  due at ``t0 + k / rate``), stamps each sample with ``time.monotonic_ns()`` and hands it to the
  router. A failed read marks the sensor degraded, leaves a gap, and is retried with exponential
  backoff (re-running the chip's ``setup()``) until the sensor answers again.
- the **router** (called on the sampler threads, under one short lock) joins the bound channels
  into frames, feeds the :class:`device.pipeline.Windower` and puts complete windows on a bounded
  queue. A full queue drops the window and counts it: sampling never waits for inference.
- the **inference** thread normalizes, runs the active model, post-processes and queues records.
- the **output** thread writes records to the sinks (so a slow sink blocks neither inference nor
  sampling) and flushes them every second and at shutdown.
- the **main** thread supervises: signals, ``--duration``, hot reload (SIGHUP or a new bundle
  file), health, the systemd watchdog (pinged only while every thread's heartbeat is fresh) and
  periodic status.

A model is used only after its bundle verified and it passed the canary (golden vectors within
tolerance, median latency within the budget). A reload that fails any step keeps the running
model and says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.bundle import Bundle, open_bundle
from device.config import Config, SensorConfig
from device.errors import BadInput, BundleError, CheckFailed, SpinalError
from device.pipeline import (
    ChannelSource,
    InputPlan,
    PostProcessor,
    PostSettings,
    Window,
    Windower,
    bind_channels,
    pick_input,
    task_output,
)
from device.signing import load_public_key
from device.sinks.base import Record, Sink
from device.systemd import Notifier

log = logging.getLogger("spinal.daemon")

CANARY_MIN_RUNS = 20
# A sampler this late (or less) reads the due ticks back to back instead of leaving a gap.
CATCH_UP_S = 0.05
# Sampler threads must get the GIL back quickly after their sleep (Python's default is 5 ms).
SWITCH_INTERVAL_S = 0.001
# A reload (verify, load, canary) runs on the supervisor; meanwhile a helper pings the watchdog for at most
# this long (while the other threads are healthy). A reload still running after that is hung: the pings
# stop and systemd restarts the daemon.
RELOAD_WATCHDOG_MAX_S = 120.0


# --------------------------------------------------------------------------------------------
# Sequence numbers that survive restarts


class SeqCounter:
    """Per-kind record sequence numbers, persistent in ``state_dir/seq.json``.

    Numbers are reserved in blocks (the reservation is written and fsynced before a number of
    the block is used), so a crash loses at most the unused part of a block but never repeats a
    number. Without a state directory the numbers start at 0 for each run.
    """

    BLOCK = 1000

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / "seq.json" if state_dir else None
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self._reserved = {str(k): int(v) for k, v in saved.items()}
            except (ValueError, OSError, AttributeError) as exc:
                log.warning("%s: unreadable (%s); sequence numbers restart at 0", self.path, exc)
        self._next = dict(self._reserved)

    def next(self, kind: str) -> int:
        with self._lock:
            n = self._next.get(kind, 0)
            self._next[kind] = n + 1
            if self.path is not None and n >= self._reserved.get(kind, 0):
                self._reserved[kind] = n + self.BLOCK
                self._save()
            return n

    def _save(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(self._reserved, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("%s: cannot save sequence numbers (%s)", self.path, exc)


# --------------------------------------------------------------------------------------------
# Metrics


class Recent:
    """The last ``n`` values of a measurement, for exact percentiles in /healthz and benchmarks."""

    def __init__(self, n: int = 4096) -> None:
        self._values: deque[float] = deque(maxlen=n)

    def add(self, value: float) -> None:
        self._values.append(value)

    def summary(self, scale: float = 1.0, digits: int = 4) -> dict[str, float | int] | None:
        values = sorted(self._values)
        if not values:
            return None

        def q(f: float) -> float:
            return round(values[min(len(values) - 1, int(f * len(values)))] * scale, digits)

        return {"n": len(values), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
                "max": round(values[-1] * scale, digits)}


class Metrics:
    """The daemon's Prometheus metrics, in a private registry (served by ``device.http``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes ...
        PlatformCollector(registry=r)
        fine = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
        self.samples = Counter("spinal_samples", "Samples read, per sensor", ["sensor"], registry=r)
        self.read_errors = Counter("spinal_sensor_read_errors", "Failed sensor reads (after bus retries)",
                                   ["sensor"], registry=r)
        self.retries = Counter("spinal_sensor_retries", "Attempts to bring a failed sensor back", ["sensor"],
                               registry=r)
        self.bus_retries = Counter("spinal_bus_retries", "I2C transactions retried after a transient error",
                                   ["sensor"], registry=r)
        self.missed_ticks = Counter("spinal_sampler_missed_ticks", "Sampling ticks skipped because the "
                                    "sampler was late", ["sensor"], registry=r)
        self.sensor_up = Gauge("spinal_sensor_up", "1 while the sensor answers, 0 while degraded", ["sensor"],
                               registry=r)
        self.sample_lateness = Histogram("spinal_sample_lateness_seconds", "Read time after the scheduled tick",
                                         ["sensor"], buckets=fine, registry=r)
        self.windows = Counter("spinal_windows", "Complete windows handed to the model", registry=r)
        self.windows_dropped = Counter("spinal_windows_dropped", "Windows not run: reason=behind (inference "
                                       "queue full), gap (sensor gap), stale (model swapped)", ["reason"],
                                       registry=r)
        self.inferences = Counter("spinal_inferences", "Model invocations", registry=r)
        self.inference_errors = Counter("spinal_inference_errors", "Model invocations that raised", registry=r)
        self.inference_latency = Histogram("spinal_inference_seconds", "Normalize + model run + post-process",
                                           buckets=fine, registry=r)
        self.window_to_sink = Histogram("spinal_window_to_sink_seconds", "Window complete to every sink written",
                                        buckets=fine, registry=r)
        self.records = Counter("spinal_records", "Records written, per sink", ["sink", "kind"], registry=r)
        self.sink_errors = Counter("spinal_sink_errors", "Sink writes that raised", ["sink"], registry=r)
        self.records_dropped = Counter("spinal_records_dropped", "Records dropped: output queue full", registry=r)
        self.model_info = Gauge("spinal_model_info", "The active model (value 1)",
                                ["model", "runtime", "version", "artifact", "precision", "delegate"], registry=r)
        self.reloads = Counter("spinal_reloads", "Model reloads by result", ["result"], registry=r)
        self.last_inference = Gauge("spinal_last_inference_timestamp_seconds", "Unix time of the last inference",
                                    registry=r)


# --------------------------------------------------------------------------------------------
# Sensors


def describe_sensor(cfg: SensorConfig, index: int) -> Any:
    """Construct the configured driver without I/O: validates its options, tells its channels."""
    from device.config import NoBus
    from device.sensors.base import SensorError
    from device.sensors.registry import make_driver

    try:
        return make_driver(cfg.driver, NoBus(), cfg.address, cfg.options)
    except SensorError as exc:
        raise BadInput(f"sensors[{index}] ({cfg.id}): {exc}") from None


def sensor_channels(cfg: SensorConfig, index: int = 0) -> tuple[str, ...]:
    """The channels a configured sensor will produce, without touching hardware."""
    return tuple(describe_sensor(cfg, index).channels)


def open_bus_for(cfg: SensorConfig, sim: bool, base_dir: Path) -> Any:
    """The bus a configured sensor talks on: ``/dev/i2c-N``, or with ``sim`` a :class:`SimBus` holding
    the simulated chip described by the sensor's ``[sensors.sim]`` table (paths relative to the config)."""
    if sim:
        from device.sensors.sim import sim_bus_for

        return sim_bus_for(cfg.driver, cfg.address, cfg.sim, cfg.rate_hz, bus_number=cfg.bus, base_dir=base_dir)
    from device.sensors.bus import open_bus

    return open_bus(cfg.bus)


class SensorOpener:
    """Builds a sensor's driver, opening its bus once and keeping it across re-initialisations
    (a simulated bus keeps its faults and its place in a recording)."""

    def __init__(self, cfg: SensorConfig, sim: bool, base_dir: Path) -> None:
        self.cfg, self.sim, self.base_dir = cfg, sim, base_dir
        self.bus: Any = None

    def __call__(self) -> Any:
        from device.sensors.registry import make_driver

        if self.bus is None:
            from device.sensors.bus import as_bus

            self.bus = as_bus(open_bus_for(self.cfg, self.sim, self.base_dir))
        return make_driver(self.cfg.driver, self.bus, self.cfg.address, self.cfg.options)


@dataclass
class SensorState:
    """What the supervisor and /healthz know about one sensor."""

    id: str
    rate_hz: float
    state: str = "starting"  # starting | ok | degraded | stopped
    samples: int = 0
    errors: int = 0
    recoveries: int = 0
    missed_ticks: int = 0
    last_error: str | None = None
    last_sample_ns: int | None = None
    heartbeat_ns: int = field(default_factory=time.monotonic_ns)
    bus_retries_seen: int = 0
    lateness_s: Recent = field(default_factory=Recent)


class Sampler(threading.Thread):
    """Reads one sensor at its rate; on failure backs off, re-initialises and recovers."""

    def __init__(self, cfg: SensorConfig, open_driver: Callable[[], Any], on_sample: Callable[..., None],
                 on_gap: Callable[[str], None], stop: threading.Event, metrics: Metrics, state: SensorState,
                 on_event: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(name=f"sampler-{cfg.id}", daemon=True)
        self.cfg = cfg
        self.open_driver = open_driver
        self.on_sample = on_sample
        self.on_gap = on_gap
        self.stop_event = stop
        self.metrics = metrics
        self.state = state
        self.on_event = on_event
        self.driver: Any = None
        self.period_ns = round(1e9 / cfg.rate_hz)
        self.catch_up_ticks = max(2, int(cfg.rate_hz * CATCH_UP_S))

    def _wait_until(self, due_ns: int) -> bool:
        """Sleep until ``due_ns`` (monotonic); ``False`` if asked to stop meanwhile."""
        while True:
            now = time.monotonic_ns()
            self.state.heartbeat_ns = now
            if now >= due_ns:
                return not self.stop_event.is_set()
            if self.stop_event.wait(min((due_ns - now) / 1e9, 0.25)):
                return False

    def _fail(self, exc: BaseException, during: str) -> None:
        st = self.state
        st.errors += 1
        st.last_error = f"{during}: {exc}"
        self.metrics.read_errors.labels(self.cfg.id).inc()
        self.on_gap(self.cfg.id)
        if st.state != "degraded":
            st.state = "degraded"
            self.metrics.sensor_up.labels(self.cfg.id).set(0)
            log.warning("sensor %s degraded: %s failed: %s; retrying with backoff", self.cfg.id, during, exc)
            self.on_event("sensor_degraded", {"sensor": self.cfg.id, "error": st.last_error})

    def run(self) -> None:
        cfg, st = self.cfg, self.state
        backoff = cfg.retry_initial_s
        t0 = time.monotonic_ns()
        k = 0
        while not self.stop_event.is_set():
            st.heartbeat_ns = time.monotonic_ns()
            if self.driver is None:
                try:
                    driver = self.open_driver()
                    driver.setup()
                    self.driver = driver
                except Exception as exc:  # any driver/bus failure: degrade, back off, retry
                    self._fail(exc, "setup")
                    if not self._wait_until(time.monotonic_ns() + int(backoff * 1e9)):
                        break
                    backoff = min(backoff * 2, cfg.retry_max_s)
                    self.metrics.retries.labels(cfg.id).inc()
                    continue
                now = time.monotonic_ns()
                k = max(k, -(-(now - t0) // self.period_ns))  # next tick on the original grid
            due = t0 + k * self.period_ns
            if not self._wait_until(due):
                break
            try:
                values = self.driver.read()
            except Exception as exc:
                self._fail(exc, "read")
                self._close_driver()
                if not self._wait_until(time.monotonic_ns() + int(backoff * 1e9)):
                    break
                backoff = min(backoff * 2, cfg.retry_max_s)
                self.metrics.retries.labels(cfg.id).inc()
                continue
            t = time.monotonic_ns()
            self.metrics.sample_lateness.labels(cfg.id).observe((t - due) / 1e9)
            st.lateness_s.add((t - due) / 1e9)
            if st.state != "ok":
                if st.state == "degraded":
                    st.recoveries += 1
                    log.info("sensor %s recovered after %d errors", cfg.id, st.errors)
                    self.on_event("sensor_recovered", {"sensor": cfg.id, "errors": st.errors})
                st.state = "ok"
                self.metrics.sensor_up.labels(cfg.id).set(1)
                backoff = cfg.retry_initial_s
            st.samples += 1
            st.last_sample_ns = t
            self.metrics.samples.labels(cfg.id).inc()
            try:
                self.on_sample(cfg.id, k, t, values)
            except Exception as exc:  # a bug downstream must not silence the sensor
                log.exception("sensor %s: handling a sample failed: %s", cfg.id, exc)
            k += 1
            late_ticks = (time.monotonic_ns() - (t0 + k * self.period_ns)) // self.period_ns
            if late_ticks > self.catch_up_ticks:
                # Far behind (a stalled bus, a long pause): skip the missed ticks; the slot jump marks a gap.
                # A shorter hiccup (the scheduler, the GIL) is caught up by reading the due ticks at once.
                k += late_ticks
                st.missed_ticks += late_ticks
                self.metrics.missed_ticks.labels(cfg.id).inc(late_ticks)
        st.state = "stopped"
        self._close_driver()

    def _close_driver(self) -> None:
        # The driver is rebuilt (and set up again) on the same bus; the bus stays open.
        self.driver = None

    def close_bus(self) -> None:
        bus = getattr(self.open_driver, "bus", None)
        close = getattr(bus, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


# --------------------------------------------------------------------------------------------
# The model: load, verify, canary


@dataclass
class CanaryResult:
    vectors: int
    max_abs_err: float
    median_ms: float
    p90_ms: float


@dataclass
class ActiveModel:
    """A verified, canary-checked model and everything derived from its manifest."""

    generation: int
    bundle: Bundle
    model: Any
    plan: InputPlan
    sources: tuple[ChannelSource, ...]
    primary: str
    post: PostProcessor
    output_name: str
    fingerprint: tuple[int, ...] | None
    canary: CanaryResult | None
    loaded_unix: float

    @property
    def name(self) -> str:
        return self.bundle.manifest.name

    def info(self) -> dict[str, Any]:
        i = self.model.info
        out = {"name": self.name, "generation": self.generation, "bundle": str(self.bundle.source),
               "runtime": i.runtime, "version": i.version, "artifact": i.artifact, "precision": i.precision,
               "delegate": i.delegate or getattr(i, "provider", None) or "cpu", "threads": i.threads,
               "fallback_reason": i.fallback_reason, "loaded_unix": self.loaded_unix}
        if self.canary:
            out["canary"] = {"vectors": self.canary.vectors, "max_abs_err": self.canary.max_abs_err,
                             "median_ms": round(self.canary.median_ms, 4)}
        return out

    def close(self) -> None:
        close = getattr(self.model, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        self.bundle.close()


def bundle_fingerprint(path: Path) -> tuple[int, ...] | None:
    """What changes when a bundle is replaced (inode, size, mtime of the archive or of its manifest)."""
    target = path / "manifest.json" if path.is_dir() else path
    try:
        st = target.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def run_canary(model: Any, bundle: Bundle, budget_ms: float) -> CanaryResult:
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
    median = statistics.median(times)
    if median > budget_ms:
        raise CheckFailed(f"{bundle.source}: canary failed: median latency {median:.3f} ms over {len(times)} runs "
                          f"exceeds [model] latency_budget_ms = {budget_ms:g}")
    return CanaryResult(vectors=result.count, max_abs_err=result.max_abs_err, median_ms=median,
                        p90_ms=times[int(0.9 * (len(times) - 1))])


def load_candidate(config: Config, channels: dict[str, tuple[str, ...]], generation: int) -> ActiveModel:
    """Open and verify the configured bundle, bind it to the sensors, load it and canary-check it."""
    from device.runtime import RuntimePolicy, load_model  # type: ignore[attr-defined]

    mc = config.model
    fingerprint = bundle_fingerprint(mc.bundle)
    bundle = open_bundle(mc.bundle, workdir=config.state_dir if config.state_dir and config.state_dir.is_dir()
                         else None, trusted_keys=[load_public_key(p) for p in mc.trusted_keys],
                         require_signature=mc.require_signature)
    try:
        manifest = bundle.manifest
        spec = pick_input(manifest, mc.input)
        plan = InputPlan.for_input(spec)
        model_channels = spec.channels or tuple(f"ch{i}" for i in range(plan.channels))
        if len(model_channels) != plan.channels:
            raise BundleError(f"{bundle.source}: input {spec.name!r} names {len(model_channels)} channels for "
                              f"{plan.channels} channel slots")
        sources = bind_channels(model_channels, channels, config.binding)
        primary = sources[0].sensor
        rate = config.sensor(primary).rate_hz
        if spec.sample_rate_hz and abs(rate - spec.sample_rate_hz) > 0.01 * spec.sample_rate_hz:
            idx = [s.id for s in config.sensors].index(primary)
            raise BadInput(f"sensors[{idx}].rate_hz: sensor {primary!r} samples at {rate:g} Hz but model "
                           f"{manifest.name!r} expects {spec.sample_rate_hz:g} Hz; set rate_hz = "
                           f"{spec.sample_rate_hz:g}")
        out_spec = task_output(manifest)
        pc = config.postprocess
        post = PostProcessor(manifest.task, out_spec, PostSettings(
            labels=pc.labels, threshold=pc.threshold, smoothing=pc.smoothing, emit=pc.emit,
            unknown_label=pc.unknown_label))
        policy = RuntimePolicy(
            runtime=mc.runtime, artifact=None if mc.artifact == "auto" else mc.artifact, threads=mc.threads,
            delegate=None if mc.delegate == "auto" else mc.delegate, fail_closed=mc.fail_closed,
            cache_dir=config.state_dir / "cache" if config.state_dir else None)
        model = load_model(bundle, policy)
        try:
            canary = run_canary(model, bundle, mc.latency_budget_ms) if mc.canary else None
        except BaseException:
            close = getattr(model, "close", None)
            if callable(close):
                close()
            raise
        return ActiveModel(generation=generation, bundle=bundle, model=model, plan=plan, sources=sources,
                           primary=primary, post=post, output_name=out_spec.name, fingerprint=fingerprint,
                           canary=canary, loaded_unix=time.time())
    except BaseException:
        bundle.close()
        raise


# --------------------------------------------------------------------------------------------
# Router: samples -> frames -> windows


@dataclass
class WindowJob:
    window: Window
    generation: int
    complete_ns: int


class Router:
    """Joins bound channels into frames and cuts windows; runs on the sampler threads."""

    def __init__(self, windows: queue.Queue[WindowJob], metrics: Metrics, rates: dict[str, float]) -> None:
        self.windows = windows
        self.metrics = metrics
        self.rates = rates
        self.lock = threading.Lock()
        self.latest: dict[str, tuple[int, dict[str, float]]] = {}
        self.windower: Windower | None = None
        self.sources: tuple[ChannelSource, ...] = ()
        self.primary: str | None = None
        self.generation = 0
        self.dropped_behind = 0
        self._gap_seen = 0

    def install(self, active: ActiveModel) -> None:
        plan = active.plan
        with self.lock:
            same = (self.windower is not None and self.sources == active.sources
                    and (self.windower.window, self.windower.hop) == (plan.window, plan.hop))
            if not same:
                self.windower = Windower(window=plan.window, hop=plan.hop, channels=plan.channels)
                self._gap_seen = 0
            self.sources = active.sources
            self.primary = active.primary
            self.generation = active.generation

    def on_gap(self, sensor_id: str) -> None:
        with self.lock:
            if self.windower is not None and any(s.sensor == sensor_id for s in self.sources):
                self.windower.mark_gap()

    def on_sample(self, sensor_id: str, slot: int, t_ns: int, values: dict[str, float]) -> None:
        job = None
        with self.lock:
            self.latest[sensor_id] = (t_ns, values)
            w = self.windower
            if w is None or sensor_id != self.primary:
                return
            frame = []
            for src in self.sources:
                if src.sensor == sensor_id:
                    if src.channel not in values:  # e.g. a channel the chip skipped this time
                        w.mark_gap()
                        return
                    frame.append(values[src.channel])
                    continue
                held = self.latest.get(src.sensor)
                max_age = 3e9 / self.rates[src.sensor] + 1e9
                if held is None or t_ns - held[0] > max_age or src.channel not in held[1]:
                    w.mark_gap()  # a secondary sensor is missing or stale: no honest frame
                    return
                frame.append(held[1][src.channel])
            win = w.push(slot, t_ns, frame)
            if w.skipped_gap > self._gap_seen:
                self.metrics.windows_dropped.labels("gap").inc(w.skipped_gap - self._gap_seen)
                self._gap_seen = w.skipped_gap
            if win is not None:
                job = WindowJob(win, self.generation, time.monotonic_ns())
        if job is not None:
            try:
                self.windows.put_nowait(job)
                self.metrics.windows.inc()
            except queue.Full:
                self.dropped_behind += 1
                self.metrics.windows_dropped.labels("behind").inc()

    def stats(self) -> dict[str, int]:
        with self.lock:
            w = self.windower
            return {"emitted": w.emitted if w else 0, "skipped_gap": w.skipped_gap if w else 0,
                    "gaps": w.gaps if w else 0, "dropped_behind": self.dropped_behind}


# --------------------------------------------------------------------------------------------
# The daemon


@dataclass
class RunOptions:
    """How ``spinal run`` was invoked."""

    duration_s: float | None = None
    sim: bool = False


@dataclass
class OutItem:
    record: Record
    complete_ns: int | None = None


class Daemon:
    """Owns every thread; :meth:`run` returns the process exit code."""

    def __init__(self, config: Config, options: RunOptions, sinks: list[tuple[Sink, tuple[str, ...]]] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.options = options
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.started_ns = time.monotonic_ns()
        self.phase = "starting"
        if config.state_dir is not None:
            try:
                config.state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BadInput(f"{config.source}: state_dir {config.state_dir}: cannot create it ({exc.strerror}); "
                               "under systemd StateDirectory= creates it, else pick a writable directory") from None
        self.seq = SeqCounter(config.state_dir)
        self.windows: queue.Queue[WindowJob] = queue.Queue(maxsize=config.daemon.queue_windows)
        self.out: queue.Queue[OutItem | None] = queue.Queue(maxsize=config.daemon.queue_records)
        self.router = Router(self.windows, self.metrics, {s.id: s.rate_hz for s in config.sensors})
        self.sensor_states = {s.id: SensorState(s.id, s.rate_hz) for s in config.sensors}
        self.samplers: list[Sampler] = []
        self.sinks = sinks if sinks is not None else []
        self._own_sinks = sinks is None
        self.active: ActiveModel | None = None
        self.model_lock = threading.Lock()  # held by inference while it runs the model; the swap takes it
        self.generation = 0
        self.inferences = 0
        self.last_inference_ns: int | None = None
        self.last_reload: dict[str, Any] | None = None
        self._failed_fingerprint: tuple[int, ...] | None = None
        self._pending_fingerprint: tuple[int, ...] | None = None
        self.infer_heartbeat_ns = time.monotonic_ns()
        self.output_heartbeat_ns = time.monotonic_ns()
        self.recent_inference = Recent()
        self.recent_window_to_sink = Recent()
        self.http: Any = None
        self._threads: list[threading.Thread] = []
        self.channels: dict[str, tuple[str, ...]] = {s.id: sensor_channels(s, i) for i, s in enumerate(config.sensors)}

    # ----- records

    def emit(self, kind: str, source: str, data: dict[str, Any], complete_ns: int | None = None,
             mono_ns: int | None = None) -> None:
        record = Record(kind=kind, seq=self.seq.next(kind), time_unix=time.time(),  # type: ignore[arg-type]
                        mono_ns=mono_ns if mono_ns is not None else time.monotonic_ns(),
                        device_id=self.config.device_id, source=source, data=data)
        try:
            self.out.put_nowait(OutItem(record, complete_ns))
        except queue.Full:
            self.metrics.records_dropped.inc()

    def event(self, name: str, data: dict[str, Any]) -> None:
        self.emit("status", self.config.device_id, {"event": name, **data})

    # ----- health

    def healthy(self) -> tuple[bool, str]:
        """Whether every thread is alive and making progress (the watchdog condition)."""
        now = time.monotonic_ns()
        stall = self.config.daemon.stall_after_s * 1e9
        for st in self.sensor_states.values():
            if st.state != "stopped" and now - st.heartbeat_ns > stall:
                return False, f"sampler {st.id} stalled for {(now - st.heartbeat_ns) / 1e9:.1f} s"
        if now - self.infer_heartbeat_ns > stall:
            return False, f"inference stalled for {(now - self.infer_heartbeat_ns) / 1e9:.1f} s"
        if now - self.output_heartbeat_ns > stall:
            return False, f"output (sinks) stalled for {(now - self.output_heartbeat_ns) / 1e9:.1f} s"
        for t in self._threads:
            if not t.is_alive() and not self.stop_event.is_set():
                return False, f"thread {t.name} died"
        return True, "ok"

    def health(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        sensors = {}
        for sid, st in self.sensor_states.items():
            sensors[sid] = {
                "state": st.state, "rate_hz": st.rate_hz, "samples": st.samples, "errors": st.errors,
                "recoveries": st.recoveries, "missed_ticks": st.missed_ticks, "last_error": st.last_error,
                "last_sample_age_s": None if st.last_sample_ns is None else round((now - st.last_sample_ns) / 1e9, 3),
                "lateness_ms": st.lateness_s.summary(scale=1000.0),
            }
        ok, why = self.healthy()
        if self.phase != "running":
            status = self.phase
        elif not ok or any(s["state"] != "ok" for s in sensors.values()):
            status = "degraded"
        else:
            status = "ok"
        active = self.active
        return {
            "status": status, "device": self.config.device_id, "uptime_s": round((now - self.started_ns) / 1e9, 3),
            "loop": why, "sensors": sensors,
            "model": active.info() if active else None,
            "runtime": active.model.info.runtime if active else None,
            "delegate": active.info()["delegate"] if active else None,
            "inferences": self.inferences,
            "last_inference_age_s": None if self.last_inference_ns is None
            else round((now - self.last_inference_ns) / 1e9, 3),
            "windows": self.router.stats(), "last_reload": self.last_reload,
            "latency_ms": {"inference": self.recent_inference.summary(scale=1000.0),
                           "window_to_sink": self.recent_window_to_sink.summary(scale=1000.0)},
            "sinks": {sink.name: self._sink_stats(sink) for sink, _ in self.sinks},
        }

    @staticmethod
    def _sink_stats(sink: Sink) -> dict[str, Any]:
        stats = getattr(sink, "stats", None)
        if not callable(stats):
            return {"type": type(sink).__name__}
        try:
            return dict(stats())
        except Exception as exc:
            return {"error": str(exc)}

    def status_line(self) -> str:
        h = self.health()
        degraded = [k for k, v in h["sensors"].items() if v["state"] != "ok"]
        model = h["model"]
        what = f"{model['name']} on {model['runtime']}/{model['delegate']}" if model else "no model"
        sensors = f"degraded: {', '.join(degraded)}" if degraded else "sensors ok"
        return f"{h['status']}: {what}; {sensors}; {self.inferences} inferences"

    # ----- model swap

    def _activate(self, cand: ActiveModel) -> ActiveModel | None:
        with self.model_lock:
            old, self.active = self.active, cand
            self.router.install(cand)
        i = cand.model.info
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(cand.name, i.runtime, i.version, i.artifact, i.precision,
                                       cand.info()["delegate"]).set(1)
        return old

    def reload(self, reason: str, startup: bool = False) -> bool:
        """Load, verify and canary the bundle; swap it in atomically or keep the running model."""
        if not startup:
            self.notifier.reloading()
        self.notifier.status(f"reloading ({reason})")
        log.info("reloading %s (%s)", self.config.model.bundle, reason)
        fingerprint = bundle_fingerprint(self.config.model.bundle)
        keep = self.active
        try:
            cand = load_candidate(self.config, self.channels, self.generation + 1)
        except Exception as exc:  # any failure keeps the running model: a bad bundle must not stop the device
            self._failed_fingerprint = fingerprint
            why = str(exc) if isinstance(exc, SpinalError) else f"{type(exc).__name__}: {exc}"
            kept = f"keeping {keep.name} (generation {keep.generation})" if keep else "no model running"
            expected = isinstance(exc, SpinalError | OSError | ValueError | RuntimeError)
            log.error("reload failed: %s; %s", why, kept, exc_info=None if expected else exc)
            self.metrics.reloads.labels("failed").inc()
            self.last_reload = {"result": "failed", "reason": reason, "error": why, "at_unix": time.time()}
            self.event("reload_failed", {"error": why, "kept": keep.info() if keep else None})
            if startup:  # nothing to keep: the start fails with the reason (and its exit code)
                if isinstance(exc, SpinalError):
                    raise
                raise CheckFailed(f"{self.config.model.bundle}: cannot start: {why}") from None
            self.notifier.notify("READY=1", f"STATUS=reload failed, {kept}: {why[:200]}")
            return False
        self.generation = cand.generation
        old = self._activate(cand)
        if old is not None:
            old.close()
        self._failed_fingerprint = None
        log.info("model %s generation %d active: %s", cand.name, cand.generation, cand.model.info.describe()
                 if hasattr(cand.model.info, "describe") else cand.info())
        self.metrics.reloads.labels("ok").inc()
        self.last_reload = {"result": "ok", "reason": reason, "generation": cand.generation, "at_unix": time.time()}
        self.event("model_loaded", cand.info())
        if not startup:
            self.notifier.notify("READY=1", f"STATUS={self.status_line()}")
        return True

    # ----- threads

    def _inference_loop(self) -> None:
        while True:
            self.infer_heartbeat_ns = time.monotonic_ns()
            try:
                job = self.windows.get(timeout=0.2)
            except queue.Empty:
                if self.stop_event.is_set():
                    return
                continue
            with self.model_lock:
                active = self.active
                if active is None or job.generation != active.generation:
                    self.metrics.windows_dropped.labels("stale").inc()
                    continue
                t = time.perf_counter()
                try:
                    x = active.plan.prepare(job.window.data)
                    outputs = active.model.run({active.plan.spec.name: x})
                    pred = active.post(outputs[active.output_name])
                except Exception as exc:
                    self.metrics.inference_errors.inc()
                    log.error("inference failed on window %d: %s", job.window.last_seq, exc)
                    continue
                elapsed = time.perf_counter() - t
            self.metrics.inference_latency.observe(elapsed)
            self.recent_inference.add(elapsed)
            self.metrics.inferences.inc()
            self.metrics.last_inference.set(time.time())
            self.inferences += 1
            self.last_inference_ns = time.monotonic_ns()
            if pred.emit:
                w = job.window
                data = pred.to_dict()
                data.update({
                    "model": active.name, "generation": active.generation,
                    "window": {"first_seq": w.first_seq, "last_seq": w.last_seq, "start_ns": w.start_ns,
                               "end_ns": w.end_ns},
                    "inference_ms": round(elapsed * 1000, 4),
                })
                self.emit("prediction", active.name, data, complete_ns=job.complete_ns, mono_ns=w.end_ns)

    def _output_loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            self.output_heartbeat_ns = time.monotonic_ns()
            try:
                item = self.out.get(timeout=0.2)
            except queue.Empty:
                item = None
            else:
                if item is None:  # the shutdown sentinel: everything before it is written
                    self._flush_sinks()
                    return
            if item is not None:
                kind = item.record.kind
                for sink, kinds in self.sinks:
                    if kind not in kinds:
                        continue
                    try:
                        sink.write(item.record)
                        self.metrics.records.labels(sink.name, kind).inc()
                    except Exception as exc:
                        self.metrics.sink_errors.labels(sink.name).inc()
                        log.error("sink %s: write failed: %s", sink.name, exc)
                if item.complete_ns is not None:
                    latency = (time.monotonic_ns() - item.complete_ns) / 1e9
                    self.metrics.window_to_sink.observe(latency)
                    self.recent_window_to_sink.add(latency)
            if time.monotonic() - last_flush >= 1.0:
                self._flush_sinks()
                last_flush = time.monotonic()

    def _flush_sinks(self) -> None:
        for sink, _ in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self.metrics.sink_errors.labels(sink.name).inc()
                log.error("sink %s: flush failed: %s", sink.name, exc)

    def _build_sinks(self) -> None:
        from device.sinks.factory import SinkContext, create_sink, metrics_namespace

        for sc in self.config.sinks:
            sink = create_sink(sc.type, sc.options, SinkContext(self.config.device_id, sc.name, self.config.state_dir))
            self.sinks.append((sink, sc.kinds))  # first: a failure below still closes it (_abort_startup)
            register = getattr(sink, "register_metrics", None)
            if callable(register):
                register(self.metrics.registry, namespace=metrics_namespace(sc.type, sc.name))

    def _on_reading(self, sensor_id: str, slot: int, t_ns: int, values: dict[str, float]) -> None:
        self.router.on_sample(sensor_id, slot, t_ns, values)
        if self._readings.get(sensor_id):
            self.emit("reading", sensor_id, {"values": values, "slot": slot}, mono_ns=t_ns)

    # ----- lifecycle

    def request_stop(self, why: str = "stop requested") -> None:
        if not self.stop_event.is_set():
            log.info("stopping: %s", why)
        self.stop_event.set()

    def run(self) -> int:
        cfg = self.config
        self._readings = {s.id: s.readings for s in cfg.sensors}
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.notifier.status("starting: loading model")
        try:
            if self._own_sinks:  # inside: a sink that fails to start closes the ones already open
                self._build_sinks()
            self.reload("startup", startup=True)
            if cfg.http.enabled:
                from device.http import HealthServer

                self.http = HealthServer(cfg.http.host, cfg.http.port, self.health, self.metrics.registry)
                self.http.start()
                host, port = self.http.address
                log.info("http: serving /healthz and /metrics on http://%s:%d", host, port)
        except BaseException:
            self._abort_startup()
            raise
        infer = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        output = threading.Thread(target=self._output_loop, name="output", daemon=True)
        for s in cfg.sensors:
            opener = SensorOpener(s, self.options.sim, cfg.source.absolute().parent)
            sampler = Sampler(s, opener, self._on_reading, self.router.on_gap,
                              self.stop_event, self.metrics, self.sensor_states[s.id], self.event)
            self.samplers.append(sampler)
        self._threads = [*self.samplers, infer, output]
        for t in self._threads:
            t.start()
        self.phase = "running"
        self.event("started", {"model": self.active.info() if self.active else None,
                               "http": list(self.http.address) if self.http else None})
        self.notifier.ready(self.status_line())
        code = self._supervise()
        return self._shutdown(code)

    def _abort_startup(self) -> None:
        """Release what a failed start had opened (sinks flush what they hold, e.g. the MQTT spool)."""
        self.phase = "stopping"
        for sink, _ in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.error("sink %s: close failed: %s", sink.name, exc)
        if self.active is not None:
            self.active.close()
        self.notifier.close()

    def _supervise(self) -> int:
        cfg = self.config
        deadline = None if self.options.duration_s is None else time.monotonic() + self.options.duration_s
        wd_interval = self.notifier.watchdog_interval_s
        next_wd = time.monotonic()
        next_status = time.monotonic() + cfg.daemon.status_interval_s
        next_watch = time.monotonic() + cfg.model.watch_interval_s
        was_healthy = True
        while not self.stop_event.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.request_stop(f"--duration {self.options.duration_s:g} s reached")
                break
            if self.reload_event.is_set():
                self.reload_event.clear()
                self._reload_pinging("SIGHUP")
            if cfg.model.watch and now >= next_watch:
                next_watch = now + cfg.model.watch_interval_s
                self._check_bundle_file()
            ok, why = self.healthy()
            if ok != was_healthy:
                (log.info if ok else log.error)("loop %s", "healthy again" if ok else f"unhealthy: {why}")
                self.notifier.status(self.status_line() if ok else f"unhealthy: {why}")
                was_healthy = ok
            if wd_interval is not None and now >= next_wd and ok:
                self.notifier.watchdog()
                next_wd = now + wd_interval
            self._sync_bus_stats()
            if now >= next_status:
                next_status = now + cfg.daemon.status_interval_s
                line = self.status_line()
                self.notifier.status(line)
                self.emit("status", cfg.device_id, {"event": "status", **self._status_data()})
            waits = [0.1]
            if wd_interval is not None:
                waits.append(max(0.0, next_wd - time.monotonic()))
            if deadline is not None:
                waits.append(max(0.0, deadline - time.monotonic()))
            self.stop_event.wait(min(waits))
        return 0

    def _status_data(self) -> dict[str, Any]:
        h = self.health()
        return {k: h[k] for k in ("status", "sensors", "inferences", "last_inference_age_s", "windows")}

    def _check_bundle_file(self) -> None:
        sig = bundle_fingerprint(self.config.model.bundle)
        active_sig = self.active.fingerprint if self.active else None
        if sig is None or sig == active_sig or sig == self._failed_fingerprint:
            self._pending_fingerprint = None
            return
        if sig != self._pending_fingerprint:  # wait one more poll: the file must be stable
            self._pending_fingerprint = sig
            return
        self._pending_fingerprint = None
        self._reload_pinging("new bundle file")

    def _reload_pinging(self, reason: str) -> None:
        """:meth:`reload` with the watchdog kept alive meanwhile: loading and canary-checking a model can take
        longer than WatchdogSec on a small board, and must not get a healthy daemon killed."""
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            self.reload(reason)
            return
        done = threading.Event()
        give_up = time.monotonic() + RELOAD_WATCHDOG_MAX_S

        def ping() -> None:
            while not done.wait(interval) and time.monotonic() < give_up:
                if self.healthy()[0]:
                    self.notifier.watchdog()

        pinger = threading.Thread(target=ping, name="watchdog-during-reload", daemon=True)
        pinger.start()
        try:
            self.reload(reason)
        finally:
            done.set()
            pinger.join()

    def _sync_bus_stats(self) -> None:
        for sampler in self.samplers:
            driver = sampler.driver
            bus = getattr(driver, "bus", None)
            stats = getattr(bus, "stats", None)
            if not callable(stats):
                continue
            try:
                retries = int(stats().retries)
            except Exception:
                continue
            st = sampler.state
            if retries > st.bus_retries_seen:
                self.metrics.bus_retries.labels(st.id).inc(retries - st.bus_retries_seen)
            st.bus_retries_seen = retries

    def _shutdown(self, code: int) -> int:
        self.phase = "stopping"
        self.stop_event.set()
        self.notifier.stopping("stopping: flushing sinks")
        for t in self.samplers:
            t.join(timeout=5)
            if not t.is_alive():
                t.close_bus()
        for t in self._threads:
            if t.name == "inference":
                t.join(timeout=10)
        self.event("stopped", {"inferences": self.inferences, "windows": self.router.stats()})
        try:
            self.out.put(None, timeout=5)
        except queue.Full:
            log.error("output queue full at shutdown; some records were not written")
        for t in self._threads:
            if t.name == "output":
                t.join(timeout=10)
                if t.is_alive():
                    log.error("output thread did not finish in 10 s (a sink is stuck); exiting anyway")
                    code = code or 1
        if code == 0 or not any(t.is_alive() for t in self._threads if t.name == "output"):
            for sink, _ in self.sinks:
                try:
                    sink.close()
                except Exception as exc:
                    log.error("sink %s: close failed: %s", sink.name, exc)
        if self.http is not None:
            self.http.close()
        if self.active is not None:
            self.active.close()
        self.notifier.close()
        log.info("stopped after %d inferences", self.inferences)
        return code

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop cleanly; SIGHUP asks for a reload (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())


# --------------------------------------------------------------------------------------------
# --check


def check_config(config: Config, sim: bool = False) -> list[str]:
    """Validate what can be validated without running: drivers and their options, the bundle (if
    it exists: integrity, binding, sample rate, post-processing, load and canary), the sinks' options.

    Returns human-readable lines; raises the first problem found.
    """
    lines = [f"{config.source}: config ok (device {config.device_id!r}, {len(config.sensors)} sensor(s), "
             f"{len(config.sinks)} sink(s))"]
    channels = {}
    for i, s in enumerate(config.sensors):
        channels[s.id] = sensor_channels(s, i)
        where = f"bus {s.bus}" + (" (simulated)" if sim else "")
        addr = f"0x{s.address:02x}" if s.address is not None else "default address"
        lines.append(f"sensor {s.id}: {s.driver} on {where} at {addr}, {s.rate_hz:g} Hz, channels "
                     f"{', '.join(channels[s.id])}")
    for sc in config.sinks:
        if sc.type == "mqtt":  # what the sink reads at start: the secrets file, the TLS files
            from device.sinks.mqtt import check_options

            check_options(sc.options.mqtt)
            mq = sc.options.mqtt
            lines.append(f"sink {sc.name}: mqtt {mq.host}:{mq.port}{' (TLS)' if mq.tls else ''}, spool "
                         f"{sc.options.spool.path}{', secrets ' + str(mq.secrets_file) if mq.secrets_file else ''}")
    if sim:
        from device.sensors import sim as simmod

        for s in config.sensors:
            simmod.sim_bus_for(s.driver, s.address, s.sim, s.rate_hz, bus_number=s.bus,
                               base_dir=config.source.absolute().parent)
    if not config.model.bundle.exists():
        lines.append(f"note: model.bundle {config.model.bundle} does not exist yet; install a bundle there "
                     "before starting the service (the model was not checked)")
        return lines
    active = load_candidate(config, channels, 1)
    try:
        info = active.info()
        lines.append(f"model {active.name}: {active.model.info.describe()}")
        lines.append(f"input {active.plan.spec.name!r}: window {active.plan.window}, hop {active.plan.hop}, "
                     f"channels {', '.join(str(c) for c in active.sources)}")
        if active.canary:
            lines.append(f"canary: {active.canary.vectors} golden vectors ok (max |err| "
                         f"{active.canary.max_abs_err:.3g}), median {active.canary.median_ms:.3f} ms "
                         f"<= budget {config.model.latency_budget_ms:g} ms")
        lines.append(f"delegate: {info['delegate']}")
    finally:
        active.close()
    return lines
