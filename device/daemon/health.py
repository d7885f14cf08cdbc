"""Health: the watchdog condition (every thread alive and beating), /healthz's report, the status line,
and rate-limited logging of repeated errors."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from device.daemon.sampler import SensorState

log = logging.getLogger("spinal.daemon")

# The same error is logged at most once per this many seconds (with the count of the ones held back).
ERROR_LOG_INTERVAL_S = 10.0


class Throttle:
    """Logs a repeated error at most once per ``interval_s``; the next line says how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float = ERROR_LOG_INTERVAL_S) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: Any) -> bool:
        """Log ``message % args`` unless one was logged less than ``interval_s`` ago; ``True`` if logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                self._held += 1
                return False
            held, self._held, self._last = self._held, 0, now
        if held:
            message += f" ({held} more like it in the last {self.interval_s:g} s not logged)"
        self.logger.log(level, message, *args)
        return True

    def reset(self) -> None:
        """The condition ended: the next error is logged at once."""
        with self._lock:
            self._last = -float("inf")
            self._held = 0


@dataclass
class SinkState:
    """What the output thread saw of one sink: writes, failures, the last success."""

    name: str
    records: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_success_unix: float | None = None
    last_error: str | None = None
    throttle: Throttle = field(default_factory=lambda: Throttle(log))

    def failed(self, why: str) -> None:
        """A write or flush raised: count it, log it (rate-limited)."""
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = why
        self.throttle.log(logging.ERROR, "sink %s: %s", self.name, why)

    def succeeded(self, n: int) -> None:
        """``n`` records were accepted."""
        if self.consecutive_errors:
            log.info("sink %s: writing again after %d failed writes", self.name, self.consecutive_errors)
            self.throttle.reset()
        self.records += n
        self.consecutive_errors = 0
        self.last_success_unix = time.time()

    @property
    def failing(self) -> bool:
        """Whether the latest write failed."""
        return self.consecutive_errors > 0

    def report(self) -> dict[str, Any]:
        """The daemon's own view, for /healthz (the sink's ``stats()`` are added to it)."""
        return {"state": "degraded" if self.failing else "ok", "records": self.records, "errors": self.errors,
                "consecutive_errors": self.consecutive_errors, "last_success_unix": self.last_success_unix,
                "last_error": self.last_error}


def stalled(name: str, heartbeat_ns: int, now_ns: int, stall_ns: float) -> str | None:
    """``"NAME stalled for X s"`` when the heartbeat is older than ``stall_ns``."""
    if now_ns - heartbeat_ns > stall_ns:
        return f"{name} stalled for {(now_ns - heartbeat_ns) / 1e9:.1f} s"
    return None


def loop_health(sensors: Iterable[SensorState], beats: dict[str, int], threads: Iterable[threading.Thread],
                stopping: bool, stall_after_s: float) -> tuple[bool, str]:
    """Whether every thread is alive and making progress (the watchdog condition), and if not, why."""
    now = time.monotonic_ns()
    stall = stall_after_s * 1e9
    for st in sensors:
        why = None if st.state == "stopped" else stalled(f"sampler {st.id}", st.heartbeat_ns, now, stall)
        if why:
            return False, why
    for name, beat in beats.items():
        why = stalled(name, beat, now, stall)
        if why:
            return False, why
    for t in threads:
        if not t.is_alive() and not stopping:
            return False, f"thread {t.name} died"
    return True, "ok"


def sensor_report(st: SensorState, now_ns: int) -> dict[str, Any]:
    """One sensor's entry of /healthz."""
    age = None if st.last_sample_ns is None else round((now_ns - st.last_sample_ns) / 1e9, 3)
    return {"state": st.state, "rate_hz": st.rate_hz, "samples": st.samples, "errors": st.errors,
            "repeats": st.repeats, "stale_events": st.stale_events,
            "recoveries": st.recoveries, "missed_ticks": st.missed_ticks, "last_error": st.last_error,
            "last_sample_age_s": age, "lateness_ms": st.lateness_s.summary(scale=1000.0)}


def sink_report(state: SinkState, stats: dict[str, Any], in_grace: bool) -> dict[str, Any]:
    """One sink's entry of /healthz: the sink's own stats (spool depth, connection ...) and what the daemon
    saw (records, errors, last success); ``state`` is ``degraded`` while writes fail, the sink reports an
    error or (after the start-up grace period) says it is not connected."""
    report = {**stats, **state.report()}
    problems = []
    if state.failing:
        problems.append(f"writes failing: {state.last_error}")
    if stats.get("error"):
        problems.append(str(stats["error"]))
    if stats.get("connected") is False and not in_grace:
        problems.append("not connected")
    report["state"] = "degraded" if problems else "ok"
    report["problem"] = "; ".join(problems) or None
    return report


def sensor_ok(report: dict[str, Any], in_grace: bool) -> bool:
    """A sensor counts as healthy when it answers, or while it is still starting in the grace period."""
    return report["state"] == "ok" or (in_grace and report["state"] == "starting")


def overall_status(phase: str, loop_ok: bool, sensors: dict[str, dict[str, Any]],
                   sinks: dict[str, dict[str, Any]] | None = None, seq_error: str | None = None,
                   in_grace: bool = False) -> str:
    """``starting``/``stopping`` outside the run; ``degraded`` when the loop, a sensor, a sink or the
    sequence numbers are not ok (a sensor merely starting during the grace period is not degraded)."""
    if phase != "running":
        return phase
    if not loop_ok or not all(sensor_ok(s, in_grace) for s in sensors.values()):
        return "degraded"
    if any(s["state"] != "ok" for s in (sinks or {}).values()) or seq_error:
        return "degraded"
    return "ok"


def status_line(health: dict[str, Any], inferences: int) -> str:
    """``ok: tiny-imu on onnxruntime/cpu; sensors ok; 12 inferences`` (systemd's STATUS=, the logs)."""
    degraded = [k for k, v in health["sensors"].items() if v["state"] not in ("ok", "starting")]
    model = health["model"]
    what = f"{model['name']} on {model['runtime']}/{model['delegate']}" if model else "no model"
    sensors = f"degraded: {', '.join(degraded)}" if degraded else "sensors ok"
    return f"{health['status']}: {what}; {sensors}; {inferences} inferences"
