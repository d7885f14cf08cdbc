"""Hot reloads: one that fails in an unexpected way keeps the running model; a slow one keeps the watchdog fed."""

from __future__ import annotations

import threading
import time

import device.daemon.model
from device.config import load_config
from device.daemon import Daemon, RunOptions
from device.systemd import Notifier
from tests.daemon.test_daemon import NotifySocket, events, records, wait_for, write_config


def test_an_unexpected_error_during_a_hot_reload_keeps_the_daemon_and_its_model(tmp_path, bundles, monkeypatch):
    daemon = Daemon(load_config(write_config(tmp_path, bundles["good"])), RunOptions(sim=True))
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.setdefault("code", daemon.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: daemon.phase == "running" and daemon.inferences >= 1, what="running")

        def broken(*args, **kwargs):
            raise KeyError("output/model.onnx/logits")  # e.g. a bug tripped over by an odd bundle

        monkeypatch.setattr(device.daemon.model, "load_candidate", broken)
        daemon.reload_event.set()  # what SIGHUP does
        wait_for(lambda: daemon.last_reload and daemon.last_reload["result"] == "failed", what="reload failed")
        # Before: the KeyError escaped the supervisor, run() raised without shutting down (sinks not closed).
        assert runner.is_alive() and daemon.active is not None and daemon.active.generation == 1
        assert "KeyError" in daemon.last_reload["error"]
        before = daemon.inferences
        wait_for(lambda: daemon.inferences > before, what="inference goes on")
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
    assert result.get("code") == 0
    failed = events(records(tmp_path / "out.jsonl"), "reload_failed")
    assert failed and failed[0]["data"]["kept"]["name"] == "tiny-imu"


def test_a_slow_reload_keeps_pinging_the_watchdog_while_the_daemon_is_healthy(tmp_path, bundles, monkeypatch):
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    daemon = Daemon(load_config(write_config(tmp_path, bundles["good"])), RunOptions(sim=True), notifier=notifier)
    real = device.daemon.model.load_candidate

    def slow(config, channels, generation):  # a big model's load + canary on a small board
        if generation > 1:
            time.sleep(1.5)
        return real(config, channels, generation)

    monkeypatch.setattr(device.daemon.model, "load_candidate", slow)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: daemon.phase == "running" and daemon.inferences >= 1, what="running")
        daemon.reload_event.set()
        t_start = wait_for(lambda: notify.lines("RELOADING=1"), what="RELOADING=1")[0][0]
        t_ready = wait_for(lambda: [t for t, _ in notify.lines("READY=1") if t > t_start], what="READY=1")[0]
        assert daemon.generation == 2
        pings = [t for t, _ in notify.lines("WATCHDOG=1") if t_start < t < t_ready]
        # Before: none (the supervisor was busy reloading); systemd would have killed a healthy daemon.
        assert t_ready - t_start >= 1.5 and len(pings) >= 5, (t_ready - t_start, len(pings))
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
        notify.close()
