"""One sampler thread per sensor: reads its driver on an absolute schedule, degrades and recovers.

Tick ``k`` is due at ``t0 + k / rate`` (the one pacer, ``device.sensors.pacing.Pacer``); each sample is
stamped with ``time.monotonic_ns()`` and handed to the router. A failed read marks the sensor degraded
and leaves a gap. Recovery is split in a cheap part and an expensive one: every ``probe_interval_s``
the sampler asks whether the chip acknowledges its address (one quick write, no data); once it does,
the chip is set up again (``setup()``: reset, configuration), and only failed set-ups back off
exponentially (``retry_initial_s`` .. ``retry_max_s``). A sensor is back within a probe interval plus
its set-up time of the fault's end, however long the fault lasted, and a dead bus sees one probe per
interval.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from device.config import Config, SensorConfig
from device.daemon.metrics import Metrics
from device.errors import BadInput
from device.percentiles import Recent
from device.sensors.base import BusError, Sensor
from device.sensors.bus import I2CBus
from device.sensors.pacing import Pacer, sleep_until

log = logging.getLogger("spinal.daemon")

# The errors of an adapter that has no SMBus quick command (the probe): not a sign the chip is gone.
_NO_QUICK = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.ENOTTY, errno.EINVAL})

OnSample = Callable[[str, int, int, dict[str, float]], None]
OnEvent = Callable[[str, dict[str, Any]], None]


def describe_sensor(cfg: SensorConfig, index: int) -> Sensor:
    """Construct the configured driver without I/O: validates its options, tells its channels."""
    from device.config import NoBus
    from device.sensors.base import SensorError
    from device.sensors.registry import make_driver

    try:
        return make_driver(cfg.driver, NoBus(), cfg.address, cfg.options)
    except SensorError as exc:
        raise BadInput(f"sensors[{index}] ({cfg.id}): {exc}") from None


def check_sim(config: Config, index: int) -> None:
    """Build the simulated chip of sensor ``index``'s ``[sensors.sim]`` once (a replay file is read): a config
    error stops the start (or ``--check``) naming file, line and key instead of being retried forever."""
    from device.config import locate
    from device.sensors.sim import sim_bus_for

    cfg = config.sensors[index]
    try:
        sim_bus_for(cfg.driver, cfg.address, cfg.sim, cfg.rate_hz, bus_number=cfg.bus,
                    base_dir=config.source.absolute().parent)
    except BadInput as exc:
        text = str(exc).removeprefix("sim: ").removeprefix("sim.")
        raise BadInput(f"{locate(config, 'sensors', index, 'sim')}: {text}") from None


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


class DriverSource(Protocol):
    """Makes a fresh driver on a bus it keeps open (``bus`` is ``None`` until the first call)."""

    bus: I2CBus | None

    def __call__(self) -> Sensor:
        """A new, not yet set-up driver."""


class SensorOpener:
    """Builds a sensor's driver, opening its bus once and keeping it across re-initialisations
    (a simulated bus keeps its faults and its place in a recording)."""

    def __init__(self, cfg: SensorConfig, sim: bool, base_dir: Path) -> None:
        self.cfg, self.sim, self.base_dir = cfg, sim, base_dir
        self.bus: I2CBus | None = None

    def __call__(self) -> Sensor:
        from device.sensors.bus import as_bus
        from device.sensors.registry import make_driver

        if self.bus is None:
            self.bus = as_bus(open_bus_for(self.cfg, self.sim, self.base_dir))
        return make_driver(self.cfg.driver, self.bus, self.cfg.address, self.cfg.options)


@dataclass
class SensorState:
    """What the supervisor and /healthz know about one sensor."""

    id: str
    rate_hz: float
    state: str = "starting"  # starting | ok | degraded (failing) | stale (frozen data) | stopped
    samples: int = 0
    errors: int = 0
    recoveries: int = 0
    missed_ticks: int = 0
    last_error: str | None = None
    last_sample_ns: int | None = None
    heartbeat_ns: int = field(default_factory=time.monotonic_ns)
    bus_retries_seen: int = 0
    lateness_s: Recent = field(default_factory=Recent)
    repeats: int = 0  # reads in a row whose values equal the read before (a frozen chip repeats its data)
    stale_events: int = 0


@dataclass(frozen=True)
class SamplerHooks:
    """Where a sampler's output goes: samples and gaps to the router, events to the records."""

    on_sample: OnSample
    on_gap: Callable[[str], None]
    on_event: OnEvent


class Sampler(threading.Thread):
    """Reads one sensor at its rate; on failure backs off, re-initialises and recovers."""

    def __init__(self, cfg: SensorConfig, open_driver: DriverSource, hooks: SamplerHooks, stop: threading.Event,
                 metrics: Metrics, state: SensorState) -> None:
        super().__init__(name=f"sampler-{cfg.id}", daemon=True)
        self.cfg = cfg
        self.open_driver = open_driver
        self.hooks = hooks
        self.stop_event = stop
        self.metrics = metrics
        self.state = state
        self.driver: Sensor | None = None
        self._backoff = cfg.retry_initial_s  # between failed set-ups (the expensive part)
        self._setup_at = 0.0  # no set-up before this (monotonic s)
        self._last_setup = time.monotonic()
        self._last_values: dict[str, float] | None = None
        self.address = describe_sensor(cfg, 0).address
        self._probe_supported = True

    def _beat(self, now_ns: int) -> None:
        self.state.heartbeat_ns = now_ns

    def _fail(self, exc: BaseException, during: str) -> None:
        st = self.state
        st.errors += 1
        st.last_error = f"{during}: {exc}"
        self.metrics.read_errors.labels(self.cfg.id).inc()
        self.hooks.on_gap(self.cfg.id)
        if st.state != "degraded":
            st.state = "degraded"
            self.metrics.sensor_up.labels(self.cfg.id).set(0)
            log.warning("sensor %s degraded: %s failed: %s; probing every %g s, set-up retried with backoff",
                        self.cfg.id, during, exc, self.cfg.probe_interval_s)
            self.hooks.on_event("sensor_degraded", {"sensor": self.cfg.id, "error": st.last_error})

    def _probe(self) -> bool:
        """The cheap check: does the chip acknowledge its address? (A quick write, as i2cdetect does: no data
        byte, no register changed; one attempt.) ``True`` when there is no bus yet (setup opens it)."""
        bus = self.open_driver.bus
        if bus is None or not self._probe_supported:
            return True
        self.metrics.probes.labels(self.cfg.id).inc()
        try:
            bus.write_quick(self.address, retries=0)
        except Exception as exc:  # a NACK, a timeout, a stuck bus: still gone
            if isinstance(exc, BusError | OSError) and exc.errno in _NO_QUICK:  # no SMBus quick: set-ups only
                log.info("sensor %s: the bus cannot probe (%s); set-ups with backoff only", self.cfg.id, exc)
                self._probe_supported = False
                return True
            self.state.last_error = f"probe: {exc}"
            return False
        return True

    def _recover(self) -> Sensor | None:
        """One step of bringing the sensor (back): probe cheaply; when the chip answers, set it up, unless a
        set-up failed recently (the expensive part backs off). A set-up is also tried after ``retry_max_s``
        without an answer to the probe (a chip that does not acknowledge a quick write)."""
        now = time.monotonic()
        overdue = now - self._last_setup >= self.cfg.retry_max_s
        if not overdue and (now < self._setup_at or not self._probe()):
            return None
        self._last_setup = now
        self.metrics.retries.labels(self.cfg.id).inc()
        driver = self._setup()
        if driver is None:
            self._setup_at = now + self._backoff
            self._backoff = min(self._backoff * 2, self.cfg.retry_max_s)
        return driver

    def _setup(self) -> Sensor | None:
        """A set-up driver, or ``None`` after a failure (counted, logged once)."""
        try:
            driver = self.open_driver()
            driver.setup()
        except Exception as exc:  # any driver/bus failure: degrade, back off, retry
            self._fail(exc, "setup")
            return None
        return driver

    def _mark_ok(self) -> None:
        st = self.state
        if st.state == "ok":
            return
        if st.state == "degraded":
            st.recoveries += 1
            log.info("sensor %s recovered after %d errors", self.cfg.id, st.errors)
            self.hooks.on_event("sensor_recovered", {"sensor": self.cfg.id, "errors": st.errors})
        elif st.state == "stale":
            log.info("sensor %s: its data changes again", self.cfg.id)
            self.hooks.on_event("sensor_fresh", {"sensor": self.cfg.id})
        st.state = "ok"
        self.metrics.sensor_up.labels(self.cfg.id).set(1)
        self.metrics.sensor_stale.labels(self.cfg.id).set(0)
        self._backoff = self.cfg.retry_initial_s
        self._setup_at = 0.0

    def _check_fresh(self, values: dict[str, float]) -> bool:
        """Whether the data still changes: ``stale_after`` identical reads in a row make the sensor stale."""
        cfg, st = self.cfg, self.state
        st.repeats = st.repeats + 1 if values == self._last_values else 0
        self._last_values = values
        if not cfg.stale_after or st.repeats + 1 < cfg.stale_after:
            return True
        if st.state != "stale":
            st.state = "stale"
            st.stale_events += 1
            st.last_error = f"stale: the same values {st.repeats + 1} reads in a row"
            self.metrics.sensor_stale.labels(cfg.id).set(1)
            log.warning("sensor %s stale: the same values %d reads in a row (a frozen chip?)", cfg.id, st.repeats + 1)
            self.hooks.on_event("sensor_stale", {"sensor": cfg.id, "repeats": st.repeats + 1})
        return False

    def _deliver(self, k: int, due: int, values: dict[str, float]) -> None:
        cfg, st = self.cfg, self.state
        t = time.monotonic_ns()
        self.metrics.sample_lateness.labels(cfg.id).observe((t - due) / 1e9)
        st.lateness_s.add((t - due) / 1e9)
        if self._check_fresh(values):
            self._mark_ok()
        st.samples += 1
        st.last_sample_ns = t
        self.metrics.samples.labels(cfg.id).inc()
        try:
            self.hooks.on_sample(cfg.id, k, t, values)
        except Exception as exc:  # a bug downstream must not silence the sensor
            log.exception("sensor %s: handling a sample failed: %s", cfg.id, exc)

    def _next_tick(self, pacer: Pacer) -> None:
        # Far behind (a stalled bus, a long pause), the pacer skips the missed ticks: the slot jump marks a gap.
        skipped = pacer.advance()
        if skipped:
            self.state.missed_ticks += skipped
            self.metrics.missed_ticks.labels(self.cfg.id).inc(skipped)

    def run(self) -> None:
        pacer = Pacer(self.cfg.rate_hz)  # the schedule of `spinal sensors read` and benchmarks/bench_sensors.py
        while not self.stop_event.is_set():
            self.state.heartbeat_ns = time.monotonic_ns()
            if self.driver is None:
                self.driver = self._recover()
                if self.driver is None:
                    probe_at = time.monotonic_ns() + int(self.cfg.probe_interval_s * 1e9)
                    if not sleep_until(probe_at, self.stop_event, self._beat):
                        break
                    continue
                pacer.rejoin()
            due = pacer.wait(self.stop_event, self._beat)
            if due is None:
                break
            try:
                values = self.driver.read()
            except Exception as exc:
                if self.state.state != "ok":  # set up, yet no good read since: the set-up did not help, back off
                    self._setup_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, self.cfg.retry_max_s)
                self._fail(exc, "read")
                self.driver = None  # rebuilt (and set up again) on the same bus; the bus stays open
                continue
            self._deliver(pacer.k, due, values)
            self._next_tick(pacer)
        self.state.state = "stopped"
        self.driver = None

    def close_bus(self) -> None:
        """Close the bus the opener holds (after the thread ended)."""
        bus = self.open_driver.bus
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.close()
