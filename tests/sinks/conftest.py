"""Fixtures for the sink tests: a real Mosquitto on a free loopback port, a recording subscriber,
and MQTT sinks that are closed at teardown."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.sinks.base import Record
from device.sinks.mqtt import MqttOptions, MqttSink
from device.sinks.spool import SpoolOptions
from tests.sinks.mosquitto_broker import MOSQUITTO, Mosquitto, Subscriber

DEVICE = "pi-test"


def require_mosquitto() -> None:
    if not shutil.which(MOSQUITTO) and not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients (.ci/run does)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require_mosquitto()
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.kill()


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[Subscriber]:
    """Subscribed to everything with a persistent session, saved by the broker before the test runs."""
    t0 = time.time()
    sub = Subscriber(broker.port).start()
    broker.wait_saved(after=t0 + 0.01)
    yield sub
    sub.stop()


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., MqttSink]]:
    sinks: list[MqttSink] = []

    def make(port: int, *, spool: SpoolOptions | None = None, **kw: Any) -> MqttSink:
        kw.setdefault("device_id", DEVICE)
        kw.setdefault("reconnect_min_s", 0.1)
        kw.setdefault("reconnect_max_s", 0.5)
        opts = MqttOptions(host="127.0.0.1", port=port, **kw)
        sink = MqttSink(opts, spool or SpoolOptions(tmp_path / "state" / "spool.db"))
        sinks.append(sink)
        return sink

    yield make
    for s in sinks:
        s.close()


def reading(seq: int, source: str = "bme280", **data: Any) -> Record:
    return Record("reading", seq, time.time(), time.monotonic_ns(), DEVICE, source,
                  data or {"temperature_c": 20.0 + seq % 10, "humidity_pct": 45.5, "pressure_hpa": 1001.3})


def prediction(seq: int, source: str = "activity", **data: Any) -> Record:
    return Record("prediction", seq, time.time(), time.monotonic_ns(), DEVICE, source,
                  data or {"label": ("idle", "walk", "run")[seq % 3], "score": 0.75, "anomaly": seq % 7 == 0})


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
