"""Sensor faults in process: frozen data is noticed (stale), and an unplugged sensor is back within 2 s of
being plugged in again, however long it was gone, without set-ups hammering the bus meanwhile."""

from __future__ import annotations

import threading
import time

from device.config import load_config
from device.daemon import Daemon, RunOptions
from tests.daemon.test_daemon import events, records, wait_for, write_config


def start(daemon: Daemon) -> threading.Thread:
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    wait_for(lambda: daemon.phase == "running" and daemon.sensor_states["imu"].state != "starting", what="running")
    return runner


def test_a_sensor_whose_data_freezes_is_stale_degraded_and_in_the_metrics(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"], sim="stale_after = 5\n[sensors.sim]\nfrozen = true\n")
    daemon = Daemon(load_config(path), RunOptions(sim=True))
    runner = start(daemon)
    try:
        # Before: never noticed; the model kept classifying a constant window.
        wait_for(lambda: daemon.sensor_states["imu"].state == "stale", timeout=10, what="stale")
        health = daemon.health()
        assert health["status"] == "degraded" and health["sensors"]["imu"]["repeats"] >= 4
        assert "stale" in health["sensors"]["imu"]["last_error"]
        assert daemon.metrics.sensor_stale.labels("imu").get() == 1
        daemon.samplers[0].open_driver.bus.raw.devices[0x68].faults.frozen = False
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", timeout=10, what="fresh again")
        assert daemon.metrics.sensor_stale.labels("imu").get() == 0
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
    recs = records(tmp_path / "out.jsonl")
    assert events(recs, "sensor_stale") and events(recs, "sensor_fresh")


def test_a_long_unplug_recovers_within_2_s_of_the_replug_without_hammering_set_ups(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"], http=False)
    path.write_text(path.read_text().replace("retry_initial_s = 0.1", "retry_initial_s = 0.5")
                    .replace("retry_max_s = 0.2", "retry_max_s = 30"))
    daemon = Daemon(load_config(path), RunOptions(sim=True))
    runner = start(daemon)
    try:
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", what="ok")
        simbus = daemon.samplers[0].open_driver.bus.raw
        setups = daemon.metrics.retries.labels("imu").get()
        probes = daemon.metrics.probes.labels("imu").get()
        simbus.unplug(0x68)
        wait_for(lambda: daemon.sensor_states["imu"].state == "degraded", what="degraded")
        time.sleep(8.0)
        probes_unplugged = daemon.metrics.probes.labels("imu").get()
        simbus.replug(0x68)  # power-cycled: it needs a set-up
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", timeout=40, what="recovered")
        # Before: set-ups backed off to 0.5, 1, 2, 4, 8 s and nothing probed: back 7.5 s after the replug.
        # Now the first probe after the replug finds the chip and its set-up follows (counted, not timed:
        # one probe interval, whatever the machine's speed; 2 when a probe was under way at the replug).
        assert daemon.metrics.probes.labels("imu").get() - probes_unplugged <= 2, "recovered by the probe"
        assert daemon.metrics.retries.labels("imu").get() - setups <= 2, "no set-up while nothing answers"
        assert probes_unplugged - probes >= 20, "a cheap probe every 0.2 s"
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)


def test_an_adapter_without_the_quick_command_falls_back_to_set_ups_with_backoff(tmp_path, bundles):
    import errno

    path = write_config(tmp_path, bundles["good"])
    path.write_text(path.read_text().replace("retry_initial_s = 0.1", "retry_initial_s = 0.5")
                    .replace("retry_max_s = 0.2", "retry_max_s = 30"))
    daemon = Daemon(load_config(path), RunOptions(sim=True))
    runner = start(daemon)
    try:
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", what="ok")
        simbus = daemon.samplers[0].open_driver.bus.raw

        def no_quick(address, force=None):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

        simbus.write_quick = no_quick
        simbus.unplug(0x68)
        wait_for(lambda: not daemon.samplers[0]._probe_supported, what="probe given up")
        simbus.replug(0x68)
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", timeout=10, what="recovered by set-ups")
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
