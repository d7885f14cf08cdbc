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


def test_held_the_packets_leave_from_the_publishing_thread_and_pahos_waits() -> None:
    client = FakeClient()
    direct = DirectWrite(client, tls=False)
    assert direct.enabled
    assert direct.hold()
    client._out_packet.extend([b"a", b"b"])  # what publish() queues
    paho_thread = threading.Thread(target=client._packet_write, name="paho")  # woken by the publish
    paho_thread.start()
    paho_thread.join(0.2)
    assert paho_thread.is_alive() and client.sent == []  # it waits for the lock
    direct.release()
    paho_thread.join(5)
    me = threading.current_thread().name
    assert client.sent == [(me, b"a"), (me, b"b")]  # all written here, none interleaved by paho's thread


def test_hold_never_waits_for_pahos_thread_writing_or_reconnecting() -> None:
    for busy in ("_packet_write", "reconnect"):
        client = FakeClient()
        direct = DirectWrite(client, tls=False)
        client.hold.set()
        paho_thread = threading.Thread(target=getattr(client, busy), name="paho")  # the wrapped one
        paho_thread.start()
        assert client.inside.wait(5)
        client.hold.clear()
        t0 = time.monotonic()
        assert not direct.hold(), busy  # the lock is paho's: the packet is left to paho's thread
        assert time.monotonic() - t0 < 1.0, busy
        client.release.set()
        paho_thread.join(5)
        assert direct.hold(), busy  # free again
        direct.release()


def test_tls_keeps_every_write_on_pahos_thread() -> None:
    client = FakeClient()
    original = client._packet_write
    direct = DirectWrite(client, tls=True)
    assert not direct.enabled and not direct.hold()
    assert client._packet_write == original  # not wrapped


def test_a_paho_without_the_packet_writer_is_left_alone() -> None:
    class Other:
        def __init__(self) -> None:
            self._out_packet = deque([b"x"])

    direct = DirectWrite(Other(), tls=False)
    assert not direct.enabled and not direct.hold()


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
