"""The sender/ack path on its own, against a recording stand-in for paho's client (no broker): the order
in which messages are handed over, from memory and from the spool file."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from device.sinks.mqtt.publisher import Publisher
from device.sinks.spool import Spool, SpoolOptions


@dataclass
class Info:
    mid: int
    rc: int = paho.MQTT_ERR_SUCCESS


class Client:
    """Records what is published; every publish succeeds."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, props: object) -> Info:
        self.published.append(payload)
        return Info(mid=len(self.published))


def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Publisher, Client, Spool, list[int]]:
    connected = threading.Event()
    connected.set()
    pub = Publisher(32, paho, None, connected, threading.Event(), threading.Event())
    spool = Spool(SpoolOptions(tmp_path / "spool.db"))
    client = Client()
    pub.bind(client, spool)
    reads: list[int] = []
    real_fetch = spool.fetch_rows

    def fetch_rows(after_id: int = 0, limit: int = 100) -> list:
        reads.append(after_id)
        return real_fetch(after_id, limit)

    monkeypatch.setattr(spool, "fetch_rows", fetch_rows)
    return pub, client, spool, reads


def batch(first: int, n: int) -> list[tuple[str, bytes, bool]]:
    return [("t", f"m{i}".encode(), False) for i in range(first, first + n)]


def test_batches_the_writer_could_not_hand_over_go_from_memory_in_order(tmp_path, monkeypatch) -> None:
    pub, client, spool, reads = make(tmp_path, monkeypatch)
    with pub.lock:  # the sender is busy: the writers cannot hand their batches over themselves
        for first in (0, 3, 10):
            handed, rejected = pub.append(batch(first, 3 if first == 0 else 7), 0.0)
            assert (handed, rejected) == (0, [])
    assert client.published == []
    pub.hand_over()
    assert client.published == [f"m{i}".encode() for i in range(17)]
    assert reads == []  # nothing read back from the file
    assert pub.cursor == spool.last_id == 17
    spool.close()


def test_older_rows_come_from_the_file_first_then_memory(tmp_path, monkeypatch) -> None:
    pub, client, spool, reads = make(tmp_path, monkeypatch)
    pub._connected.clear()  # an outage: the writer hands nothing over; memory is not trusted after it
    pub.append(batch(0, 5), 0.0)
    pub.drop_pending()  # what the sender does while disconnected
    pub._connected.set()
    with pub.lock:
        pub.append(batch(5, 4), 0.0)
    pub.hand_over()  # 1-5 are only in the file: read them, then 6-9 from memory on the next turn
    pub.hand_over()
    assert client.published == [f"m{i}".encode() for i in range(9)]
    assert reads == [0]
    spool.close()


def test_a_partly_handed_batch_continues_where_it_stopped(tmp_path, monkeypatch) -> None:
    pub, client, spool, reads = make(tmp_path, monkeypatch)
    pub.handover = 4  # paho may hold 4: the sender hands over 4 at a time
    with pub.lock:
        pub.append(batch(0, 10), 0.0)
    pub.hand_over()
    assert len(client.published) == 4
    pub.outstanding.clear()  # their PUBACKs came
    pub.hand_over()
    pub.outstanding.clear()
    pub.hand_over()
    assert client.published == [f"m{i}".encode() for i in range(10)]
    assert reads == []
    spool.close()


def test_after_a_drop_oldest_the_sender_reads_the_file(tmp_path, monkeypatch) -> None:
    connected = threading.Event()
    connected.set()
    pub = Publisher(32, paho, None, connected, threading.Event(), threading.Event())
    spool = Spool(SpoolOptions(tmp_path / "spool.db", max_messages=5))
    client = Client()
    pub.bind(client, spool)
    with pub.lock:
        pub.append(batch(0, 4), 0.0)
        pub.append(batch(4, 4), 0.0)  # drops m0-m2: what memory holds is stale
    pub.hand_over()
    assert client.published == [f"m{i}".encode() for i in range(3, 8)]
    spool.close()


def test_memory_holds_a_backlog_up_to_pending_bytes_then_the_oldest_come_from_the_file(tmp_path,
                                                                                      monkeypatch) -> None:
    import device.sinks.mqtt.publisher as publisher

    pub, client, spool, reads = make(tmp_path, monkeypatch)
    # 100 batches of 10 (a burst, as when the network lags the writer) fit in memory: no read-back
    with pub.lock:
        for first in range(0, 1000, 10):
            pub.append(batch(first, 10), 0.0)
    while len(client.published) < 1000:
        pub.hand_over()
        pub.outstanding.clear()  # their PUBACKs
    assert reads == []
    assert client.published == [f"m{i}".encode() for i in range(1000)]
    # With room for about 3 batches, the memory keeps the newest; the oldest are read back, in order.
    size = spool.fetch_rows(0, 1)[0][5] if spool.depth else 0
    assert size > 0
    monkeypatch.setattr(publisher, "PENDING_BYTES", 3 * 10 * size)
    with pub.lock:
        for first in range(1000, 1200, 10):
            pub.append(batch(first, 10), 0.0)
    while len(client.published) < 1200:
        pub.hand_over()
        pub.outstanding.clear()
    assert reads  # the oldest of this backlog came from the file
    assert client.published == [f"m{i}".encode() for i in range(1200)]
    pub.hand_over()  # the sender's next turn lets go of what the file read handed over
    assert pub._pending_in - pub._pending_out == 0 and not pub._pending
    spool.close()
