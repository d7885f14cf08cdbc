"""Routing: samples -> frames -> windows (on the sampler threads), and records -> sinks (the output thread).

The **router** joins the bound channels into frames under one short lock, feeds the
:class:`device.pipeline.Windower` and puts complete windows on a bounded queue. A full queue drops
the window and counts it: sampling never waits for inference.

The **output** thread takes every record that has accumulated on the output queue and hands each
sink its share in one ``write_many`` call (the MQTT spool commits such a batch in one transaction),
so a slow sink blocks neither inference nor sampling. Sinks are flushed every second and at shutdown.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from device.daemon.health import SinkState
from device.daemon.metrics import Metrics
from device.percentiles import Recent
from device.pipeline import ChannelSource, Window, Windower
from device.sinks.base import Record, Sink

if TYPE_CHECKING:
    from device.daemon.model import ActiveModel

log = logging.getLogger("spinal.daemon")

# The most records one write_many call gets (a bound on a transaction and on the time one batch holds a sink).
MAX_BATCH = 512
FLUSH_INTERVAL_S = 1.0


@dataclass
class WindowJob:
    """A complete window for the model generation that was active when it was cut."""

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
        """Cut windows for ``active`` from now on (keeping the windower when the layout is the same)."""
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
        """A sensor missed samples: the window being filled cannot be continued."""
        with self.lock:
            if self.windower is not None and any(s.sensor == sensor_id for s in self.sources):
                self.windower.mark_gap()

    def _frame(self, w: Windower, sensor_id: str, t_ns: int, values: dict[str, float]) -> list[float] | None:
        """The model's channels for this primary sample, or ``None`` (and a gap) when one is missing."""
        frame = []
        for src in self.sources:
            if src.sensor == sensor_id:
                if src.channel not in values:  # e.g. a channel the chip skipped this time
                    w.mark_gap()
                    return None
                frame.append(values[src.channel])
                continue
            held = self.latest.get(src.sensor)
            max_age = 3e9 / self.rates[src.sensor] + 1e9
            if held is None or t_ns - held[0] > max_age or src.channel not in held[1]:
                w.mark_gap()  # a secondary sensor is missing or stale: no honest frame
                return None
            frame.append(held[1][src.channel])
        return frame

    def on_sample(self, sensor_id: str, slot: int, t_ns: int, values: dict[str, float]) -> None:
        """One sample: held for the frames of other sensors; a primary sample extends the window."""
        job = None
        with self.lock:
            self.latest[sensor_id] = (t_ns, values)
            w = self.windower
            if w is None or sensor_id != self.primary:
                return
            frame = self._frame(w, sensor_id, t_ns, values)
            if frame is None:
                return
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
        """Windows emitted, skipped over gaps, gaps, dropped because inference was behind."""
        with self.lock:
            w = self.windower
            return {"emitted": w.emitted if w else 0, "skipped_gap": w.skipped_gap if w else 0,
                    "gaps": w.gaps if w else 0, "dropped_behind": self.dropped_behind}


@dataclass
class OutItem:
    """A record on its way to the sinks; ``complete_ns``: when its window was complete (predictions)."""

    record: Record
    complete_ns: int | None = None


class Output:
    """The output thread's work: batches of records to the sinks, periodic flushes, per-sink health."""

    def __init__(self, out: queue.Queue[OutItem | None], sinks: list[tuple[Sink, tuple[str, ...]]],
                 metrics: Metrics) -> None:
        self.out = out
        self.sinks = sinks
        self.metrics = metrics
        self.states: dict[str, SinkState] = {}
        self.recent_window_to_sink = Recent()
        self.heartbeat_ns = time.monotonic_ns()

    def state(self, sink: Sink) -> SinkState:
        """The health record of ``sink`` (created on first use)."""
        st = self.states.get(sink.name)
        if st is None:
            st = self.states[sink.name] = SinkState(sink.name)
        return st

    def _take(self) -> tuple[list[OutItem], bool]:
        """What has accumulated (waiting up to 0.2 s for the first item); ``True`` once the sentinel came."""
        try:
            item = self.out.get(timeout=0.2)
        except queue.Empty:
            return [], False
        items: list[OutItem] = []
        while item is not None:
            items.append(item)
            if len(items) >= MAX_BATCH:
                return items, False
            try:
                item = self.out.get_nowait()
            except queue.Empty:
                return items, False
        return items, True

    def write(self, items: list[OutItem]) -> None:
        """Hand each sink the records of its kinds, all in one call; then observe window-to-sink latency."""
        for sink, kinds in self.sinks:
            batch = [i.record for i in items if i.record.kind in kinds]
            if not batch:
                continue
            st = self.state(sink)
            try:
                sink.write_many(batch)
            except Exception as exc:
                self.metrics.sink_errors.labels(sink.name).inc()
                self.metrics.sink_up.labels(sink.name).set(0)
                st.failed(f"write failed ({len(batch)} records): {exc}")
                continue
            st.succeeded(len(batch))
            self.metrics.sink_up.labels(sink.name).set(1)
            for kind, n in Counter(r.kind for r in batch).items():
                self.metrics.records.labels(sink.name, kind).inc(n)
        now = time.monotonic_ns()
        for item in items:
            if item.complete_ns is not None:
                latency = (now - item.complete_ns) / 1e9
                self.metrics.window_to_sink.observe(latency)
                self.recent_window_to_sink.add(latency)

    def flush(self) -> None:
        """Flush every sink (errors counted and logged, rate-limited)."""
        for sink, _ in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self.metrics.sink_errors.labels(sink.name).inc()
                self.state(sink).failed(f"flush failed: {exc}")

    def run(self) -> None:
        """The thread body: until the shutdown sentinel, after which everything before it is written."""
        last_flush = time.monotonic()
        while True:
            self.heartbeat_ns = time.monotonic_ns()
            items, done = self._take()
            if items:
                self.write(items)
            if done:
                self.flush()
                return
            if time.monotonic() - last_flush >= FLUSH_INTERVAL_S:
                self.flush()
                last_flush = time.monotonic()

    def close_sinks(self) -> None:
        """Close every sink (each flushes first)."""
        for sink, _ in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.error("sink %s: close failed: %s", sink.name, exc)
