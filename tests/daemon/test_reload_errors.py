"""A reload that fails in an unexpected way (an exception no one planned for) keeps the running model."""

from __future__ import annotations

import threading

import device.daemon
from device.config import load_config
from device.daemon import Daemon, RunOptions
from tests.daemon.test_daemon import events, records, wait_for, write_config


def test_an_unexpected_error_during_a_hot_reload_keeps_the_daemon_and_its_model(tmp_path, bundles, monkeypatch):
    daemon = Daemon(load_config(write_config(tmp_path, bundles["good"])), RunOptions(sim=True))
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.setdefault("code", daemon.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: daemon.phase == "running" and daemon.inferences >= 1, what="running")

        def broken(*args, **kwargs):
            raise KeyError("output/model.onnx/logits")  # e.g. a bug tripped over by an odd bundle

        monkeypatch.setattr(device.daemon, "load_candidate", broken)
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
