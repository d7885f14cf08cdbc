"""/healthz tells the truth: failing sinks make it degraded (and are logged rate-limited), a sensor that
is merely starting does not (during the start-up grace period), seq.json that cannot be saved does."""

from __future__ import annotations

import errno
import logging
import threading
import time
from typing import Any

from device.config import load_config
from device.daemon import Daemon, RunOptions
from tests.daemon.test_daemon import wait_for, write_config


class FlakySink:
    """A sink whose writes fail (disk full) while ``broken`` is set."""

    name = "flaky"

    def __init__(self) -> None:
        self.broken = False
        self.records: list[Any] = []

    def write(self, record: Any) -> None:
        self.write_many([record])

    def write_many(self, records: Any) -> None:
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.records.extend(records)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"spool_depth": 7}

    def register_metrics(self, registry: Any, namespace: str) -> None:
        pass


def test_failing_sink_writes_make_health_degraded_and_are_logged_rate_limited(tmp_path, bundles, caplog):
    sink = FlakySink()
    cfg = load_config(write_config(tmp_path, bundles["good"], readings=True))
    daemon = Daemon(cfg, RunOptions(sim=True), sinks=[(sink, ("prediction", "reading", "status"))])
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: daemon.phase == "running" and len(sink.records) > 20, what="records")
        wait_for(lambda: daemon.health()["status"] == "ok", what="ok")
        report = daemon.health()["sinks"]["flaky"]
        assert report["state"] == "ok" and report["spool_depth"] == 7 and report["last_success_unix"]
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="spinal.daemon"):
            sink.broken = True
            time.sleep(1.5)  # about 75 readings and 7 predictions fail
            health = daemon.health()
            # Before: "ok" while every write failed.
            assert health["status"] == "degraded"
            report = health["sinks"]["flaky"]
            assert report["state"] == "degraded" and "No space left" in report["problem"]
            assert report["errors"] >= 3 and report["last_success_unix"] < time.time() - 1.0
            lines = [r for r in caplog.records if "sink flaky" in r.getMessage()]
            # Before: one line per failed record (about 80 here).
            assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
            sink.broken = False
        wait_for(lambda: daemon.health()["sinks"]["flaky"]["state"] == "ok", what="writing again")
        assert daemon.health()["status"] == "ok"
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)


def test_sensors_that_are_merely_starting_are_not_degraded_during_the_grace_period(tmp_path, bundles):
    cfg = load_config(write_config(tmp_path, bundles["good"]))
    daemon = Daemon(cfg, RunOptions(sim=True), sinks=[])
    daemon.phase = "running"  # the threads started; no sample yet
    assert daemon.sensor_states["imu"].state == "starting"
    # Before: "degraded" for the first 0.5-0.8 s of every start.
    assert daemon.health()["status"] == "ok"
    daemon.started_ns -= int(10e9)  # still no sample 10 s after the start: that is a problem
    for st in daemon.sensor_states.values():
        st.heartbeat_ns = time.monotonic_ns()
    assert daemon.health()["status"] == "degraded"


def test_sequence_numbers_that_cannot_be_saved_make_health_degraded(tmp_path, bundles, monkeypatch):
    from device.daemon.seq import SeqCounter

    cfg = load_config(write_config(tmp_path, bundles["good"]))
    daemon = Daemon(cfg, RunOptions(sim=True), sinks=[])
    daemon.phase = "running"
    daemon.sensor_states["imu"].state = "ok"
    monkeypatch.setattr(SeqCounter, "_write", lambda self, body: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    daemon.event("test", {})
    assert daemon.metrics.records_unnumbered.get() == 1
    assert daemon.health()["status"] == "degraded" and daemon.health()["seq"]["error"]


class SlowSink(FlakySink):
    """Every write_many takes 0.3 s (a slow disk, a slow broker): records pile up meanwhile."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def write_many(self, records: Any) -> None:
        self.batches.append(len(records))
        time.sleep(0.3)
        super().write_many(records)


def test_the_output_thread_hands_a_sink_everything_that_accumulated_in_one_call(tmp_path, bundles):
    sink = SlowSink()
    cfg = load_config(write_config(tmp_path, bundles["good"], readings=True))
    daemon = Daemon(cfg, RunOptions(sim=True), sinks=[(sink, ("reading",))])
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(sink.batches) >= 5, what="five batches")
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
    # 50 readings/s against one call per 0.3 s: about 15 records a call (before: one call per record).
    assert max(sink.batches) >= 5, sink.batches
    seqs = [r.seq for r in sink.records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "in order, none lost"


def test_a_sink_that_is_not_connected_after_the_grace_period_is_degraded(tmp_path, bundles):
    class Offline(FlakySink):
        name = "mqtt"

        def stats(self) -> dict[str, Any]:
            return {"connected": False, "spool_depth": 12}

    cfg = load_config(write_config(tmp_path, bundles["good"]))
    daemon = Daemon(cfg, RunOptions(sim=True), sinks=[(Offline(), ("status",))])
    daemon.phase = "running"
    daemon.sensor_states["imu"].state = "ok"
    assert daemon.health()["status"] == "ok", "while starting, a connection may still be on its way"
    daemon.started_ns -= int(10e9)
    daemon.sensor_states["imu"].heartbeat_ns = time.monotonic_ns()
    health = daemon.health()
    # Before: "ok" while the broker was down.
    assert health["status"] == "degraded" and health["sinks"]["mqtt"]["problem"] == "not connected"
    assert health["sinks"]["mqtt"]["spool_depth"] == 12
