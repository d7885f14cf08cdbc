"""The daemon's composition root: builds the parts, runs the threads, supervises, shuts down.

Threads and what they own:

- one **sampler** per sensor (:mod:`device.daemon.sampler`);
- the **router** (:mod:`device.daemon.router`), called on the sampler threads, cuts windows;
- the **inference** thread normalizes, runs the active model (:mod:`device.daemon.model`),
  post-processes and queues records;
- the **output** thread writes the queued records to the sinks in batches and flushes them;
- the **main** thread supervises: signals, ``--duration``, hot reload (SIGHUP or a new bundle
  file), health (:mod:`device.daemon.health`), the systemd watchdog (pinged only while every
  thread's heartbeat is fresh) and periodic status.
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from device.config import Config
from device.daemon import health as health_mod
from device.daemon.metrics import Metrics
from device.daemon.model import ActiveModel, ModelSlot, remove_unpacked_leftovers
from device.daemon.router import OutItem, Output, Router, WindowJob
from device.daemon.sampler import Sampler, SamplerHooks, SensorOpener, SensorState, check_sim, sensor_channels
from device.daemon.seq import SeqCounter, SeqUnavailable
from device.errors import BadInput
from device.percentiles import Recent
from device.sinks.base import Record, RecordKind, Sink
from device.systemd import Notifier

if TYPE_CHECKING:
    from device.http import HealthServer

log = logging.getLogger("spinal.daemon")

# Sampler threads must get the GIL back quickly after their sleep (Python's default is 5 ms).
SWITCH_INTERVAL_S = 0.001
# A reload (verify, load, canary) runs on the supervisor; meanwhile a helper pings the watchdog for at most
# this long (while the other threads are healthy). A reload still running after that is hung: the pings
# stop and systemd restarts the daemon.
RELOAD_WATCHDOG_MAX_S = 120.0


def release_freed_memory() -> None:
    """Give back to the system what start-up or a reload freed: a full garbage collection, then glibc's
    ``malloc_trim`` (where there is none, e.g. musl, only the collection). Opening, verifying and canary-checking
    a bundle allocates and frees megabytes; without the trim glibc keeps those pages in the process for good."""
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


@dataclass
class RunOptions:
    """How ``spinal run`` was invoked."""

    duration_s: float | None = None
    sim: bool = False


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
        self._make_state_dir()
        self.seq = SeqCounter(config.state_dir)
        self._seq_log = health_mod.Throttle(log)
        self.windows: queue.Queue[WindowJob] = queue.Queue(maxsize=config.daemon.queue_windows)
        self.out: queue.Queue[OutItem | None] = queue.Queue(maxsize=config.daemon.queue_records)
        self.router = Router(self.windows, self.metrics, {s.id: s.rate_hz for s in config.sensors})
        self.sensor_states = {s.id: SensorState(s.id, s.rate_hz) for s in config.sensors}
        self.samplers: list[Sampler] = []
        self.sinks = sinks if sinks is not None else []
        self._own_sinks = sinks is None
        self.output = Output(self.out, self.sinks, self.metrics)
        self.channels: dict[str, tuple[str, ...]] = {s.id: sensor_channels(s, i) for i, s in enumerate(config.sensors)}
        self.models = ModelSlot(config, self.channels, self.metrics, self.notifier, self.event, self.router.install)
        self.inferences = 0
        self.last_inference_ns: int | None = None
        self.infer_heartbeat_ns = time.monotonic_ns()
        self.recent_inference = Recent()
        self.http: HealthServer | None = None
        self._threads: list[threading.Thread] = []
        self._infer_thread = threading.Thread()  # replaced by the real threads in _start_threads
        self._output_thread = threading.Thread()

    def _make_state_dir(self) -> None:
        cfg = self.config
        if cfg.state_dir is None:
            return
        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"{cfg.source}: state_dir {cfg.state_dir}: cannot create it ({exc.strerror}); "
                           "under systemd StateDirectory= creates it, else pick a writable directory") from None
        remove_unpacked_leftovers(cfg.state_dir)

    # ----- the model (kept as attributes of the daemon for callers and tests)

    @property
    def active(self) -> ActiveModel | None:
        """The running model."""
        return self.models.active

    @property
    def generation(self) -> int:
        """The generation of the latest model loaded (1 at start, +1 per successful reload)."""
        return self.models.generation

    @property
    def last_reload(self) -> dict[str, Any] | None:
        """The outcome of the latest reload."""
        return self.models.last_reload

    def reload(self, reason: str, startup: bool = False) -> bool:
        """Load, verify and canary the bundle; swap it in atomically or keep the running model."""
        return self.models.reload(reason, startup=startup, status_line=self.status_line)

    # ----- records

    def emit(self, kind: RecordKind, source: str, data: dict[str, Any], complete_ns: int | None = None,
             mono_ns: int | None = None) -> None:
        """Queue a record for the sinks (counted as dropped when the output queue is full)."""
        try:
            seq = self.seq.next(kind)
        except SeqUnavailable as exc:  # never a number that could be issued again after a restart
            self.metrics.records_unnumbered.inc()
            self._seq_log.log(logging.ERROR, "%s record dropped: %s", kind, exc)
            return
        record = Record(kind=kind, seq=seq, time_unix=time.time(),
                        mono_ns=mono_ns if mono_ns is not None else time.monotonic_ns(),
                        device_id=self.config.device_id, source=source, data=data)
        try:
            self.out.put_nowait(OutItem(record, complete_ns))
        except queue.Full:
            self.metrics.records_dropped.inc()

    def event(self, name: str, data: dict[str, Any]) -> None:
        """A ``status`` record with ``event = name``."""
        self.emit("status", self.config.device_id, {"event": name, **data})

    # ----- health

    def healthy(self) -> tuple[bool, str]:
        """Whether every thread is alive and making progress (the watchdog condition)."""
        beats = {"inference": self.infer_heartbeat_ns, "output (sinks)": self.output.heartbeat_ns}
        return health_mod.loop_health(self.sensor_states.values(), beats, self._threads, self.stop_event.is_set(),
                                      self.config.daemon.stall_after_s)

    def in_grace(self) -> bool:
        """Whether the start-up grace period (``[daemon] startup_grace_s``) is still on."""
        return (time.monotonic_ns() - self.started_ns) / 1e9 < self.config.daemon.startup_grace_s

    def sink_reports(self) -> dict[str, dict[str, Any]]:
        """Each sink's /healthz entry."""
        grace = self.in_grace()
        return {sink.name: health_mod.sink_report(self.output.state(sink), self._sink_stats(sink), grace)
                for sink, _ in self.sinks}

    def health(self) -> dict[str, Any]:
        """The /healthz document."""
        now = time.monotonic_ns()
        sensors = {sid: health_mod.sensor_report(st, now) for sid, st in self.sensor_states.items()}
        sinks = self.sink_reports()
        ok, why = self.healthy()
        active = self.active
        status = health_mod.overall_status(self.phase, ok, sensors, sinks, self.seq.error, self.in_grace())
        return {
            "status": status, "device": self.config.device_id,
            "uptime_s": round((now - self.started_ns) / 1e9, 3), "loop": why, "sensors": sensors,
            "model": active.info() if active else None,
            "runtime": active.model.info.runtime if active else None,
            "delegate": active.delegate if active else None,
            "inferences": self.inferences,
            "last_inference_age_s": None if self.last_inference_ns is None
            else round((now - self.last_inference_ns) / 1e9, 3),
            "windows": self.router.stats(), "last_reload": self.last_reload,
            "latency_ms": {"inference": self.recent_inference.summary(scale=1000.0),
                           "window_to_sink": self.output.recent_window_to_sink.summary(scale=1000.0)},
            "sinks": sinks,
            "seq": {"error": self.seq.error, "save_errors": self.seq.save_errors},
        }

    @staticmethod
    def _sink_stats(sink: Sink) -> dict[str, Any]:
        try:
            return dict(sink.stats())
        except Exception as exc:
            return {"error": f"stats failed: {exc}"}

    def status_line(self) -> str:
        """One line: status, model, sensors, inferences."""
        return health_mod.status_line(self.health(), self.inferences)

    # ----- threads

    def _infer(self, job: WindowJob) -> None:
        with self.models.lock:
            active = self.active
            if active is None or job.generation != active.generation:
                self.metrics.windows_dropped.labels("stale").inc()
                return
            t = time.perf_counter()
            try:
                x = active.plan.prepare(job.window.data)
                outputs = active.model.run({active.plan.spec.name: x})
                pred = active.post(outputs[active.output_name])
            except Exception as exc:
                self.metrics.inference_errors.inc()
                log.error("inference failed on window %d: %s", job.window.last_seq, exc)
                return
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

    def _inference_loop(self) -> None:
        while True:
            self.infer_heartbeat_ns = time.monotonic_ns()
            try:
                job = self.windows.get(timeout=0.2)
            except queue.Empty:
                if self.stop_event.is_set():
                    return
                continue
            self._infer(job)

    def _build_sinks(self) -> None:
        from device.sinks.factory import SinkContext, create_sink, metrics_namespace

        for sc in self.config.sinks:
            sink = create_sink(sc.type, sc.options, SinkContext(self.config.device_id, sc.name, self.config.state_dir))
            self.sinks.append((sink, sc.kinds))  # first: a failure below still closes it (_abort_startup)
            sink.register_metrics(self.metrics.registry, namespace=metrics_namespace(sc.type, sc.name))

    def _on_reading(self, sensor_id: str, slot: int, t_ns: int, values: dict[str, float]) -> None:
        self.router.on_sample(sensor_id, slot, t_ns, values)
        if self._readings.get(sensor_id):
            self.emit("reading", sensor_id, {"values": values, "slot": slot}, mono_ns=t_ns)

    # ----- lifecycle

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask every thread to stop (safe from a signal handler)."""
        if not self.stop_event.is_set():
            log.info("stopping: %s", why)
        self.stop_event.set()

    def _start_http(self) -> None:
        cfg = self.config
        if not cfg.http.enabled:
            return
        from device.http import HealthServer

        self.http = HealthServer(cfg.http.host, cfg.http.port, self.health, self.metrics.registry,
                                 max_connections=cfg.http.max_connections, timeout_s=cfg.http.timeout_s)
        self.http.start()
        host, port = self.http.address
        log.info("http: serving /healthz and /metrics on http://%s:%d", host, port)

    def _start_threads(self) -> None:
        cfg = self.config
        hooks = SamplerHooks(on_sample=self._on_reading, on_gap=self.router.on_gap, on_event=self.event)
        for s in cfg.sensors:
            opener = SensorOpener(s, self.options.sim, cfg.source.absolute().parent)
            self.samplers.append(Sampler(s, opener, hooks, self.stop_event, self.metrics, self.sensor_states[s.id]))
        self._infer_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._output_thread = threading.Thread(target=self.output.run, name="output", daemon=True)
        self._threads = [*self.samplers, self._infer_thread, self._output_thread]
        for t in self._threads:
            t.start()

    def run(self) -> int:
        """Start everything, supervise until stopped, shut down; the exit code."""
        self._readings = {s.id: s.readings for s in self.config.sensors}
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.notifier.status("starting: loading model")
        try:
            if self.options.sim:  # a bad [sensors.sim] table stops the start (not retried by the sampler)
                for i in range(len(self.config.sensors)):
                    check_sim(self.config, i)
            if self._own_sinks:  # inside: a sink that fails to start closes the ones already open
                self._build_sinks()
            self.reload("startup", startup=True)
            self._start_http()
        except BaseException:
            self._abort_startup()
            raise
        self._start_threads()
        self.phase = "running"
        self.event("started", {"model": self.active.info() if self.active else None,
                               "http": list(self.http.address) if self.http else None})
        self.notifier.ready(self.status_line())
        release_freed_memory()
        code = self._supervise()
        return self._shutdown(code)

    def _abort_startup(self) -> None:
        """Release what a failed start had opened (sinks flush what they hold, e.g. the MQTT spool)."""
        self.phase = "stopping"
        self.output.close_sinks()
        self.models.close()
        self.seq.close()  # a failed start is a clean stop: the next start continues the numbers
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
                if self.models.bundle_changed():
                    self._reload_pinging("new bundle file")
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
                self.notifier.status(self.status_line())
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

    def _reload_pinging(self, reason: str) -> None:
        """:meth:`reload` with the watchdog kept alive meanwhile: loading and canary-checking a model can take
        longer than WatchdogSec on a small board, and must not get a healthy daemon killed."""
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            self.reload(reason)
            release_freed_memory()
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
        release_freed_memory()

    def _sync_bus_stats(self) -> None:
        for sampler in self.samplers:
            bus = sampler.open_driver.bus
            if bus is None:
                continue
            retries = bus.stats().retries
            st = sampler.state
            if retries > st.bus_retries_seen:
                self.metrics.bus_retries.labels(st.id).inc(retries - st.bus_retries_seen)
            st.bus_retries_seen = retries

    def _join_workers(self) -> int:
        """Stop the samplers and inference, then the output thread after the sentinel; 1 if a sink hung."""
        for sampler in self.samplers:
            sampler.join(timeout=5)
            if not sampler.is_alive():
                sampler.close_bus()
        self._infer_thread.join(timeout=10)
        self.event("stopped", {"inferences": self.inferences, "windows": self.router.stats()})
        try:
            self.out.put(None, timeout=5)
        except queue.Full:
            log.error("output queue full at shutdown; some records were not written")
        self._output_thread.join(timeout=10)
        if self._output_thread.is_alive():
            log.error("output thread did not finish in 10 s (a sink is stuck); exiting anyway")
            return 1
        return 0

    def _shutdown(self, code: int) -> int:
        self.phase = "stopping"
        self.stop_event.set()
        self.notifier.stopping("stopping: flushing sinks")
        hung = self._join_workers()
        code = code or hung
        if code == 0 or not self._output_thread.is_alive():
            self.output.close_sinks()
        if self.http is not None:
            self.http.close()
        self.models.close()
        self.seq.close()
        self.notifier.close()
        log.info("stopped after %d inferences", self.inferences)
        return code

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop cleanly; SIGHUP asks for a reload (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())
