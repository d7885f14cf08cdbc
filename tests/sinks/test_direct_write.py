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
        self.message_lock = threading.RLock()

    def publish(self, packet: bytes) -> None:
        """As paho's: under its message lock, queue the packet."""
        with self.message_lock:
            self._out_packet.append(packet)

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


def test_flush_writes_the_queue_from_the_publishing_thread() -> None:
    client = FakeClient()
    direct = DirectWrite(client, tls=False)
    assert direct.enabled
    client.publish(b"a")
    client.publish(b"b")
    direct.flush()
    me = threading.current_thread().name
    assert client.sent == [(me, b"a"), (me, b"b")]


def test_flush_never_waits_for_pahos_thread_writing_or_reconnecting() -> None:
    for busy in ("_packet_write", "reconnect"):
        client = FakeClient()
        direct = DirectWrite(client, tls=False)
        client.hold.set()
        paho_thread = threading.Thread(target=getattr(client, busy), name="paho")  # the wrapped one
        paho_thread.start()
        assert client.inside.wait(5)
        client.hold.clear()
        client.publish(b"mine")
        t0 = time.monotonic()
        direct.flush()  # the lock is paho's: the packet is left to paho's thread
        assert time.monotonic() - t0 < 1.0, busy
        assert client.sent == [], busy
        client.release.set()
        paho_thread.join(5)
        direct.flush()  # free again: written now
        assert [p for _, p in client.sent] == [b"mine"], busy


def test_no_deadlock_with_pahos_thread_writing_under_its_message_lock() -> None:
    """paho's thread writes the messages it resends after a CONNACK while holding its message lock, which
    publish() takes too. The publishing thread must not hold the writer's lock across publish() (the first
    version did: the sink hung when a broker came back while the sender handed messages over)."""
    client = FakeClient()
    direct = DirectWrite(client, tls=False)
    resending = threading.Event()

    def paho_after_connack() -> None:
        with client.message_lock:
            client._out_packet.append(b"resent")
            resending.set()
            time.sleep(0.2)  # the publishing thread is now waiting for the message lock
            client._packet_write()

    def publishing() -> None:
        assert resending.wait(5)
        client.publish(b"new")
        direct.flush()

    threads = [threading.Thread(target=paho_after_connack, name="paho"),
               threading.Thread(target=publishing, name="writer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert sorted(p for _, p in client.sent) == [b"new", b"resent"]


def test_tls_keeps_every_write_on_pahos_thread() -> None:
    client = FakeClient()
    original = client._packet_write
    direct = DirectWrite(client, tls=True)
    assert not direct.enabled
    assert client._packet_write == original  # not wrapped
    client.publish(b"x")
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
