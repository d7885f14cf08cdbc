"""Sinks as the daemon builds them: JSON lines (rotation, fsync), the MQTT sink from [[sinks]]
(config, a real Mosquitto), sd_notify's socket forms and the persistent sequence numbers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from device.config import ConfigError, load_config
from device.daemon import SeqCounter
from device.errors import BadInput
from device.sinks.base import Record
from device.sinks.jsonl import JsonlOptions, JsonlSink
from device.systemd import Notifier
from tests.daemon.test_daemon import predictions, spawn, wait_for, write_config


def rec(seq: int, **data) -> Record:
    return Record(kind="prediction", seq=seq, time_unix=1.0, mono_ns=seq, device_id="d", source="m", data=data)


def test_jsonl_rotates_by_size_and_keeps_n_files(tmp_path):
    path = tmp_path / "out" / "records.jsonl"
    sink = JsonlSink(JsonlOptions(path=path, rotate_bytes=400, keep=2, fsync="always"))
    for i in range(40):
        sink.write(rec(i, label="walk", pad="x" * 20))
    sink.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    assert all(p.stat().st_size <= 400 for p in path.parent.iterdir())
    seqs = []
    for name in ("records.jsonl.2", "records.jsonl.1", "records.jsonl"):
        seqs += [json.loads(line)["seq"] for line in (path.parent / name).read_text().splitlines()]
    assert seqs == list(range(40 - len(seqs), 40)), "the newest records, in order, nothing repeated"
    assert sink.rotations > 2
    with pytest.raises(RuntimeError, match="closed"):
        sink.write(rec(99))


def test_jsonl_appends_across_restarts_and_refuses_an_unwritable_path(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(2):
        sink = JsonlSink(JsonlOptions(path=path, fsync="flush"))
        sink.write(rec(i))
        sink.close()
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [0, 1]
    (tmp_path / "file").write_text("")
    with pytest.raises(BadInput, match=r"cannot open .*file/r\.jsonl for writing"):
        JsonlSink(JsonlOptions(path=tmp_path / "file" / "r.jsonl"))


MQTT = """
device_id = "pi-test"
state_dir = "{tmp}"
[model]
bundle = "m.spinal"
[[sensors]]
id = "imu"
driver = "mpu6050"
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {port}
topic_prefix = "spinal"
reconnect_min_s = 0.1
kinds = ["prediction", "status"]
{extra}
"""


def test_mqtt_sink_options_come_from_the_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MQTT.format(tmp=tmp_path, port=1883, extra='[sinks.homeassistant]\ndiscovery_prefix = "ha"\n'))
    cfg = load_config(path)
    (sink,) = cfg.sinks
    assert sink.type == "mqtt" and sink.name == "mqtt" and sink.kinds == ("prediction", "status")
    assert sink.options.mqtt.device_id == "pi-test" and sink.options.mqtt.port == 1883
    assert sink.options.mqtt.homeassistant.discovery_prefix == "ha"
    assert sink.options.spool.path == tmp_path / "mqtt-spool.sqlite"
    path.write_text(MQTT.format(tmp=tmp_path, port=1883, extra="keepalive = 30\n"))
    with pytest.raises(ConfigError, match=r"c\.toml:16: sinks\[0\]\.keepalive: unknown key; did you mean 'keepal"):
        load_config(path)
    path.write_text(MQTT.format(tmp=tmp_path, port=1883, extra="keepalive_s = 2\n"))
    with pytest.raises(ConfigError, match=r"c\.toml:16: sinks\[0\]\.keepalive_s: mqtt\.keepalive_s must be 5\.\.65535, "
                                          r"got 2"):
        load_config(path)


def test_the_daemon_publishes_predictions_to_a_real_broker(tmp_path, bundles):
    from tests.sinks.conftest import require_mosquitto
    from tests.sinks.mosquitto_broker import Mosquitto, Subscriber

    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, persistent=False).start()
    try:
        sink = (f'[[sinks]]\ntype = "mqtt"\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_min_s = 0.1\n'
                f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "out.jsonl"}"\nkinds = ["prediction"]\n')
        proc = spawn(write_config(tmp_path, bundles["good"], sink=sink))
        if not sub.wait_for(lambda: len(sub.snapshot("spinal/test-pi/predictions/tiny-imu")) >= 3, timeout=30):
            proc.kill()
            raise AssertionError(f"no predictions on the broker; daemon stderr: {proc.communicate()[1][-2000:]}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        wait_for(lambda: sub.snapshot("spinal/test-pi/status/"), what="status records")
        got = [m.json() for m in sub.snapshot("spinal/test-pi/predictions/tiny-imu")]
        assert [g["seq"] for g in got] == sorted({g["seq"] for g in got})[: len(got)]
        assert got[0]["data"]["label"] in {"still", "walk", "run", "shake"}
        local = predictions([json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()])
        assert len(got) == len(local), "every prediction in the file also reached the broker before exit"
        assert (tmp_path / "mqtt-spool.sqlite").exists()
    finally:
        sub.stop()
        broker.kill()


def test_notifier_speaks_to_path_and_abstract_sockets_and_respects_watchdog_pid(tmp_path):
    name = f"spinal-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_interval_s == 1.5
    assert n.ready("ok")
    assert server.recv(100) == b"READY=1\nSTATUS=ok"
    assert n.watchdog() and server.recv(100) == b"WATCHDOG=1"
    server.close()
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    off = Notifier({})
    assert not off.enabled and off.notify("READY=1") is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert gone.notify("READY=1") is False and gone.errors == 1


def test_sequence_numbers_are_reserved_in_blocks(tmp_path):
    c = SeqCounter(tmp_path)
    assert [c.next("prediction") for _ in range(3)] == [0, 1, 2]
    assert json.loads((tmp_path / "seq.json").read_text()) == {"reserved": {"prediction": 1000}}
    again = SeqCounter(tmp_path)  # after a crash: never reuse a number
    assert again.next("prediction") == 1000
    assert SeqCounter(None).next("status") == 0
    time.sleep(0)
    assert Path(tmp_path / "seq.json").exists()


def test_jsonl_lines_are_strict_json_with_nan_and_numpy_values(tmp_path):
    """Before: NaN was written as a bare NaN (not JSON: strict parsers reject the line) and numpy scalars as
    strings ("2.5"); now the JSON lines sink writes what the MQTT sink publishes (encode_record)."""
    import numpy as np

    path = tmp_path / "r.jsonl"
    sink = JsonlSink(JsonlOptions(path=path))
    sink.write(rec(0, score=float("nan"), t=np.float32(2.5), v=np.arange(2), inf=float("inf")))
    sink.close()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    line = json.loads(path.read_text(), parse_constant=refuse)
    assert line["data"] == {"score": None, "t": 2.5, "v": [0, 1], "inf": None}


def test_jsonl_keeps_records_while_a_reopen_after_rotation_fails_and_writes_them_once_it_works(tmp_path, monkeypatch):
    """Before: the sink kept the closed file and every later write raised 'I/O operation on closed file'."""
    import errno

    import device.sinks.jsonl as jsonl

    monkeypatch.setattr(jsonl, "RETRY_S", 0.0)
    path = tmp_path / "records.jsonl"
    sink = JsonlSink(JsonlOptions(path=path, rotate_bytes=600, keep=50, fsync="flush"))
    real_open = sink._open_fd
    broken = {"on": False}

    def open_fd(p):
        if broken["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(p)

    monkeypatch.setattr(sink, "_open_fd", open_fd)
    failures = 0
    for i in range(60):
        broken["on"] = 20 <= i < 40  # every reopen after a rotation in this stretch fails
        try:
            sink.write_many([rec(i, pad="x" * 30)])
        except OSError as exc:
            failures += 1
            assert "No space left" in str(exc) and "closed file" not in str(exc)
    sink.close()
    assert failures > 0 and sink.rotations > 2
    seqs = []
    for f in sorted(path.parent.glob("records.jsonl*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit()
                    else 0):
        seqs += [json.loads(line)["seq"] for line in f.read_text().splitlines()]
    assert seqs == list(range(60)), "every record, once, in order"
    assert sink.stats()["pending"] == 0 and sink.stats()["error"] is None


def test_a_sink_option_its_dataclass_refuses_is_reported_at_its_key_line(tmp_path):
    # The options dataclasses check themselves (device.schema.invalid): the error carries the key, no regex.
    path = tmp_path / "c.toml"
    path.write_text(MQTT.format(tmp=tmp_path, port=1883, extra='[sinks.homeassistant]\nauto_entities = true\n'
                                                              'discovery_prefix = "ha/"\n'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == ("sinks", 0, "homeassistant", "discovery_prefix")
    assert str(info.value).endswith("c.toml:18: sinks[0].homeassistant.discovery_prefix: "
                                    "mqtt.homeassistant.discovery_prefix 'ha/' is not a valid topic prefix")
    path.write_text(MQTT.format(tmp=tmp_path, port=1883, extra="[sinks.spool]\nmax_bytes = 10\n"))
    with pytest.raises(ConfigError, match=r"c\.toml:17: sinks\[0\]\.spool\.max_bytes: mqtt\.spool\.max_bytes must "
                                          r"be at least 1024, got 10"):
        load_config(path)
