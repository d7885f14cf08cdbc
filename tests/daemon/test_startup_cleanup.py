"""What a failed start leaves behind: nothing open (sinks closed, spool lock released, no hung close)."""

from __future__ import annotations

import threading

import pytest

from device.config import load_config
from device.daemon import Daemon, RunOptions
from device.errors import BadInput
from device.http import HealthServer
from device.sinks.spool import Spool, SpoolOptions


def test_a_sink_that_fails_to_open_closes_the_sinks_opened_before_it(tmp_path):
    (tmp_path / "a-file").write_text("")
    cfg_path = tmp_path / "spinal.toml"
    cfg_path.write_text(f"""
device_id = "pi-test"
state_dir = "{tmp_path / "state"}"
[model]
bundle = "{tmp_path / "absent.spinal"}"
[[sensors]]
id = "imu"
driver = "mpu6050"
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = 1
[[sinks]]
type = "jsonl"
path = "{tmp_path / "a-file" / "out.jsonl"}"
""")
    daemon = Daemon(load_config(cfg_path), RunOptions(sim=True))
    with pytest.raises(BadInput, match=r"cannot open .*a-file/out\.jsonl for writing"):
        daemon.run()
    # Before: the MQTT sink built first stayed open (its sender and network threads running, the spool locked).
    (mqtt, _), = daemon.sinks
    assert not mqtt._sender.is_alive()
    with Spool(SpoolOptions(path=tmp_path / "state" / "mqtt-spool.sqlite")) as spool:
        assert spool.depth == 0


def test_closing_a_health_server_that_never_started_returns():
    from device.metrics import Registry

    server = HealthServer("127.0.0.1", 0, dict, Registry())
    closer = threading.Thread(target=server.close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive(), "HealthServer.close() hung (shutdown() waits for a serve_forever that never ran)"


def test_unpacked_archive_copies_left_by_a_killed_daemon_are_removed_at_start(tmp_path, bundles):
    from tests.daemon.test_daemon import write_config

    cfg = load_config(write_config(tmp_path, bundles["good"]))
    for i in range(3):  # what SIGKILL leaves: the unpacked copy of the archive
        leftover = tmp_path / f"spinal-bundle-{i}abc"
        leftover.mkdir()
        (leftover / "model.onnx").write_bytes(b"x" * 1000)
    (tmp_path / "spinal-bundle-not-a-dir").write_text("kept")
    Daemon(cfg, RunOptions(sim=True))
    assert sorted(p.name for p in tmp_path.glob("spinal-bundle-*")) == ["spinal-bundle-not-a-dir"]


def test_a_full_disk_at_start_is_reported_as_such_with_exit_code_3(tmp_path, bundles, monkeypatch):
    import builtins
    import errno

    import device.bundle
    from device.errors import OutOfSpace
    from tests.daemon.test_daemon import write_config

    cfg = load_config(write_config(tmp_path, bundles["good"]))
    real_open = builtins.open

    def full_disk(file, mode="r", *args, **kwargs):
        if "x" in str(mode) and "spinal-bundle-" in str(file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(device.bundle, "open", full_disk, raising=False)
    daemon = Daemon(cfg, RunOptions(sim=True))
    # Before: BundleError "not a readable .spinal archive (OSError: [Errno 28] ...)", exit 2: a restart loop.
    with pytest.raises(OutOfSpace, match=r"no space left on device while unpacking .*model\.spinal") as info:
        daemon.run()
    assert info.value.exit_code == 3 and "not a readable" not in str(info.value)
    assert not list(tmp_path.glob("spinal-bundle-*")), "the partial copy is removed"


def test_the_unit_does_not_restart_on_a_full_disk():
    from pathlib import Path

    unit = (Path(__file__).resolve().parents[2] / "firmware" / "spinal.service").read_text()
    assert "RestartPreventExitStatus=3" in unit
