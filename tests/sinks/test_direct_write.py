"""DirectWrite: the publishing thread puts its packets on the wire, safely beside paho's own thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from device.sinks.mqtt.direct import DirectWrite
from tests.sinks.conftest import DEVICE, reading, wait_until
from tests.sinks.mosquitto_broker import first_arrivals

PUBLISH = 0x30


class FakeClient:
    """What DirectWrite uses of paho's client: the packet queue, the packet writer, reconnect."""

    def __init__(self) -> None:
        self._out_packet: deque[bytes] = deque()
        self.sent: list[tuple[str, bytes]] = []
        self.hold = threading.Event()  # set: the writer/reconnect blocks until release is set
        self.release = threading.Event()
        self.inside = threading.Event()

    def _packet_write(self) -> int:
        self._block()
        while self._out_packet:
            self.sent.append((threading.current_thread().name, self._out_packet.popleft()))
        return 0

    def reconnect(self) -> int:
        self._block()
        return 0

    def _block(self) -> None:
        if self.hold.is_set():
            self.inside.set()
            self.release.wait(5)


def test_flush_writes_the_queue_from_the_calling_thread() -> None:
    client = FakeClient()
    direct = DirectWrite(client, tls=False)
    assert direct.enabled
    client._out_packet.extend([b"a", b"b"])
    direct.flush()
    assert client.sent == [(threading.current_thread().name, b"a"), (threading.current_thread().name, b"b")]


def test_flush_never_waits_for_pahos_thread_writing_or_reconnecting() -> None:
    for busy in ("_packet_write", "reconnect"):
        client = FakeClient()
        direct = DirectWrite(client, tls=False)
        client.hold.set()
        paho_thread = threading.Thread(target=getattr(client, busy), name="paho")  # the wrapped one
        paho_thread.start()
        assert client.inside.wait(5)
        client.hold.clear()
        client._out_packet.append(b"mine")
        t0 = time.monotonic()
        direct.flush()  # the lock is paho's: leave the packet to paho's thread
        assert time.monotonic() - t0 < 1.0, busy
        assert [p for _, p in client.sent] == [], busy
        client.release.set()
        paho_thread.join(5)
        direct.flush()  # free again: written now
        assert b"mine" in [p for _, p in client.sent], busy


def test_tls_keeps_every_write_on_pahos_thread() -> None:
    client = FakeClient()
    original = client._packet_write
    direct = DirectWrite(client, tls=True)
    assert not direct.enabled
    assert client._packet_write == original  # not wrapped
    client._out_packet.append(b"x")
    direct.flush()
    assert client.sent == []


def test_a_paho_without_the_packet_writer_is_left_alone() -> None:
    class Other:
        def __init__(self) -> None:
            self._out_packet = deque([b"x"])

    direct = DirectWrite(Other(), tls=False)
    assert not direct.enabled
    direct.flush()


def test_the_installed_paho_lets_the_writer_send_and_nothing_is_lost(broker, subscriber, make_sink) -> None:
    """With the real paho and broker: PUBLISH packets leave from the writing thread (before this module,
    every one left from paho's thread), and every record arrives, in order."""
    sink = make_sink(broker.port)
    assert sink.publisher.direct is not None and sink.publisher.direct.enabled, \
        "paho's internals changed: DirectWrite is off (see device/sinks/mqtt/direct.py)"
    deadline = time.monotonic() + 10
    while not sink.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    client: Any = sink.publisher.client
    senders: list[str] = []
    send = client._sock_send

    def recording_send(buf: bytes) -> int:
        if buf and buf[0] & 0xF0 == PUBLISH:
            senders.append(threading.current_thread().name)
        return int(send(buf))

    client._sock_send = recording_send
    n = 20
    for i in range(n):
        acked = sink.acked
        sink.write(reading(i))
        while sink.acked == acked and time.monotonic() < deadline + 20:
            time.sleep(0.001)
    topic = f"spinal/{DEVICE}/readings/bme280"
    assert wait_until(lambda: len(subscriber.snapshot(topic)) >= n, 10)
    assert first_arrivals(subscriber.seqs_by_topic(f"spinal/{DEVICE}")[topic]) == list(range(n))
    assert threading.current_thread().name in senders
