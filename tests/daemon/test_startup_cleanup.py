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
    from prometheus_client import CollectorRegistry

    server = HealthServer("127.0.0.1", 0, dict, CollectorRegistry())
    closer = threading.Thread(target=server.close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive(), "HealthServer.close() hung (shutdown() waits for a serve_forever that never ran)"
