"""The sender/ack path: spooled messages to paho in spool order, PUBACKs back to spool deletes.

Who runs what: a writer (``MqttSink.write_many``) hands its new rows to paho itself while they are being
committed, when nothing older is waiting (:meth:`Publisher.hand_over_new`); the sender thread
(:meth:`Publisher.run`) hands over the rest from the file, takes the PUBACKs paho's network thread queues
(:meth:`Publisher.on_publish`) and deletes the delivered messages from the spool in batches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from device.percentiles import Recent
from device.sinks.mqtt.const import (
    ACK_TICK_S,
    ACK_WAKE,
    DELETE_BATCH,
    DELETE_DELAY_S,
    FETCH_ROWS,
    HANDOVER,
    PENDING_BYTES,
    TRANSIENT,
    log,
)
from device.sinks.mqtt.direct import DirectWrite
from device.sinks.mqtt.metrics import SinkMetrics
from device.sinks.spool import Spool, SpoolRow

# What paho holds for us: mid -> (spool id, monotonic time handed over, monotonic time written, topic).
Outstanding = dict[int, tuple[int, float, float, str]]


class Publisher:
    """The messages between the spool and paho. ``lock`` guards ``outstanding`` together with ``cursor``,
    ``resync`` and the retry state; ``acks`` needs no lock (paho's thread appends, the sender pops)."""

    def __init__(self, max_inflight: int, paho: Any, props: Any, connected: threading.Event,
                 wake: threading.Event, stop: threading.Event) -> None:
        self._ok = (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN)
        self._props = props  # MQTT 5 publish properties (packed once), None for 3.1.1
        self._max_inflight = max_inflight
        self._connected, self._wake, self._stop = connected, wake, stop
        self.client: Any = None  # paho's client and the spool, given by bind()
        self.direct: DirectWrite | None = None
        self.spool: Spool
        self.acks: deque[tuple[int, Any, float]] = deque()  # PUBACKs as paho reports them
        self.lock = threading.Lock()
        self.outstanding: Outstanding = {}
        self.cursor = 0  # highest spool id handed to paho in this process
        self.window = max_inflight  # paho's in-flight limit, lowered to the broker's Receive Maximum
        # paho keeps what is beyond the window in its own queue and sends it from its network thread as
        # PUBACKs come in (as plain paho does); this bounds what it holds (memory, resends after a break).
        self.handover = max(max_inflight, HANDOVER)
        self.resync = False  # after a reconnect: let paho resend its unacknowledged ones first
        self.retry_from: int | None = None  # lowest spool id the broker asked us to send again
        self.retry_at = 0.0
        self.idle = False
        self._done: list[int] = []  # acknowledged, still in the spool until delete_done()
        self._done_since = 0.0
        self._rejected_logged: dict[str, float] = {}
        self._t_write = 0.0  # the batch being written: its start, first id handed over, ids paho refused
        self._batch_first = 0
        self._batch_handed = 0
        self._batch_rejected: list[int] = []
        self._batch_rows: list[SpoolRow] = []
        # Committed rows their writer could not hand over, with the batch's write time and size: the sender
        # hands them over from here instead of reading them back (writers append, only the sender pops).
        # Their bytes are the bytes writers added minus those the sender took (each counter has one writer).
        self._pending: deque[tuple[list[SpoolRow], float, int]] = deque()
        self._pending_in = 0
        self._pending_out = 0
        self._pending_stale = False
        self.metrics: SinkMetrics | None = None
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.retries = 0
        self.publish_latency = Recent()
        self.delivery_latency = Recent()

    def bind(self, client: Any, spool: Spool, tls: bool = False) -> None:
        """Start from the head of ``spool``, publishing through ``client`` (``tls``: whether its connection
        is TLS, which keeps every socket write on paho's thread)."""
        self.client = client
        self.direct = DirectWrite(client, tls)
        self.spool = spool
        self.cursor = spool.head_cursor()

    # -- paho's network thread: short, never blocks ----------------------------------------

    def on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        """paho's on_publish. paho holds its message lock here, and a writer holding ``lock`` may be
        waiting for it inside publish(): take no lock of ours (deque.append is atomic; Event.set uses its
        own private lock)."""
        self.acks.append((mid, reason, time.monotonic()))
        if (self.idle or len(self.acks) >= ACK_WAKE) and not self._wake.is_set():
            self._wake.set()

    def on_connected(self, receive_max: int | None) -> None:
        """A new connection (before ``connected`` is set): the window the broker allows, and a resync
        when paho holds messages from before the break."""
        limit = self._max_inflight
        self.window = min(limit, int(receive_max)) if receive_max else limit
        # paho's own in-flight limit (max_inflight) cannot change on a live connection: when the broker
        # allows fewer, hand paho no more than that, so that paho never has more in flight than allowed.
        self.handover = max(limit, HANDOVER) if self.window == limit else self.window
        # paho resends the messages it holds (unacknowledged before the break) right after on_connect
        # returns; new ones must not overtake them, so nothing new is handed over until their PUBACKs
        # are in. (resync is set before connected: a writer that sees the one sees the other.)
        self.resync = bool(self.outstanding)

    # -- the sender thread -----------------------------------------------------------------

    def run(self, tick: Callable[[float], None] | None) -> None:
        """The sender thread's loop, until ``stop``; ``tick(now)`` runs after each hand-over."""
        while not self._stop.is_set():
            # PUBACKs are taken in batches: every ACK_TICK_S while messages are out (or when many wait),
            # and delivered messages leave the spool in one delete per DELETE_DELAY_S (or DELETE_BATCH).
            busy = bool(self.outstanding or self._done)
            self.idle = not busy  # then the next PUBACK wakes it (it would wait 0.25 s)
            self._wake.wait(ACK_TICK_S if busy else 0.25)
            self.idle = False
            self._wake.clear()
            try:
                self.drain_acks()
                self.delete_done()
                if self._connected.is_set():
                    self.hand_over()
                    if tick is not None:
                        tick(time.monotonic())
                else:
                    self.drop_pending()  # all in the file; read back after the reconnect
            except Exception:  # never let the sender die: the spool keeps everything meanwhile
                log.exception("MQTT sender: unexpected error; retrying in 1 s")
                self._stop.wait(1.0)
        self.drain_acks()
        self.delete_done(force=True)

    def delete_done(self, force: bool = False) -> None:
        """Remove acknowledged messages from the spool, many per transaction. Until then they are only
        counted in the depth: a crash meanwhile sends them again (at-least-once), nothing is lost."""
        done = self._done
        if not done:
            return
        if force or len(done) >= DELETE_BATCH or time.monotonic() - self._done_since >= DELETE_DELAY_S:
            self._done = []
            self.spool.delete(done)

    def _hand_over_start(self) -> tuple[int, int]:
        """(room, cursor) for the next read from the file; room <= 0 when nothing may be handed over."""
        with self.lock:
            if self.resync:
                if self.outstanding:
                    return 0, self.cursor
                self.resync = False
            if self.retry_from is not None:
                if self.outstanding or time.monotonic() < self.retry_at:
                    return 0, self.cursor
                self.cursor = min(self.cursor, self.retry_from - 1)
                self.retry_from = None
            return min(self.handover - len(self.outstanding), FETCH_ROWS), self.cursor

    def hand_over(self) -> None:
        """Hand spooled messages to paho in spool order (after a restart, a break or a backlog; the
        writer hands over new messages itself while nothing is waiting before them): from memory what
        writers left there, else read from the file. The file is read without ``lock`` held: a writer in
        its commit holds the spool's lock, and must not find ``lock`` taken for that long (it would leave
        its batch to this thread)."""
        room, cursor = self._hand_over_start()
        if room <= 0:
            return
        with self.lock:
            handed, rejected = self._hand_over_pending(room)
        if handed is None:
            handed, rejected = self._hand_over_from_file(room, cursor)
        if rejected:
            self.spool.delete(rejected)
        if handed == room:
            self._wake.set()

    def _hand_over_pending(self, room: int) -> tuple[int | None, list[int]]:
        """Publish rows kept in memory (``lock`` held): (how many, ids refused), or (None, []) when the
        next row to send is not there."""
        pending = self._pending
        if self._pending_stale:
            self._pending_stale = False
            self.drop_pending()
        while pending and self._pending_in - self._pending_out > PENDING_BYTES:
            self._pending_out += pending.popleft()[2]
        cursor = self.cursor
        while pending and pending[0][0][-1][0] <= cursor:  # handed over meanwhile (writer or file)
            self._pending_out += pending.popleft()[2]
        if (not pending or pending[0][0][0][0] > cursor + 1 or self.resync or self.retry_from is not None
                or not self._connected.is_set()):
            return None, []
        handed = 0
        rejected: list[int] = []
        while pending and handed < room:
            rows, t_written, size = pending[0]
            start = self.cursor + 1 - rows[0][0]
            if start < 0:  # a gap (rows of a batch that failed to commit are never kept): read the file
                break
            chunk = rows[start:start + room - handed]
            if start + len(chunk) == len(rows):
                pending.popleft()
                self._pending_out += size
            rejected += self._publish_rows(chunk, t_written)
            handed += len(chunk)
        return handed, rejected

    def _hand_over_from_file(self, room: int, cursor: int) -> tuple[int, list[int]]:
        if cursor >= self.spool.last_id:  # nothing committed beyond what was handed over
            return 0, []
        rows = self.spool.fetch_rows(cursor, room)
        if not rows:
            return 0, []
        # Rows from the file carry their wall-clock time of writing; the latency stats want monotonic.
        offset = time.monotonic() - time.time()
        with self.lock:
            if self.resync or self.retry_from is not None or not self._connected.is_set():
                return 0, []
            if self.cursor < cursor:  # cannot happen (only this thread moves it back); read again next time
                return 0, []
            if self.cursor > cursor:  # the writer handed some over meanwhile: they are the oldest ones
                rows = [r for r in rows if r[0] > self.cursor]
            rejected = self._publish_rows(rows, None, offset) if rows else []
        return len(rows), rejected

    def _publish_rows(self, rows: list[SpoolRow], t_written: float | None, offset: float = 0.0) -> list[int]:
        """publish() each row at QoS 1 (``lock`` held); returns the ids paho refused outright.
        ``t_written`` is the rows' monotonic write time, or None to take it from each row's
        ``created`` (wall clock) plus ``offset``."""
        publish = self.client.publish
        props = self._props
        outstanding = self.outstanding
        ok = self._ok
        rejected: list[int] = []
        t_handed = time.monotonic()
        # Whether paho sends any of these at once (its in-flight window has room): then this thread puts
        # them on the wire after the loop (DirectWrite); beyond the window paho queues and sends them itself.
        direct = self.direct if len(outstanding) < self.window else None
        for row in rows:
            spool_id, topic, payload, retain = row[0], row[1], row[2], row[3]
            try:
                info = publish(topic, payload, 1, bool(retain), props)
                rc = info.rc
            except ValueError as exc:
                info, rc = None, str(exc)
            self.cursor = spool_id
            if info is None or rc not in ok:
                rejected.append(spool_id)
                self._log_rejected(topic, rc)
                continue
            outstanding[info.mid] = (spool_id, t_handed, row[4] + offset if t_written is None else t_written, topic)
        if direct is not None:
            direct.flush()
        n = len(rows) - len(rejected)
        self.published += n
        if self.metrics:
            self.metrics.published.inc(n)
        if rejected:
            self.rejected += len(rejected)
            if self.metrics:
                self.metrics.rejected.inc(len(rejected))
        return rejected

    # -- the writer's side -------------------------------------------------------------------

    def append(self, batch: list[tuple[str, bytes, bool]], t_write: float) -> tuple[int, list[int]]:
        """Append ``batch`` to the spool in one transaction, handing it to paho meanwhile when nothing is
        waiting before it; returns (how many were handed over, the ids paho refused). The caller holds
        the sink's write lock. If the commit fails this raises and forgets what was handed over."""
        self._t_write = t_write
        self._batch_first = 0
        self._batch_handed = 0
        self._batch_rejected = []
        self._batch_rows = []
        dropped = self.spool.dropped
        try:
            self.spool.append_many(batch, self.hand_over_new)
        except BaseException:
            if self._batch_first:
                self._forget_batch(self._batch_first)
            raise
        rows, handed = self._batch_rows, self._batch_handed
        if self.spool.dropped != dropped:
            # drop-oldest may have removed rows kept in memory: the sender reads the file instead.
            self._pending_stale = True
        elif handed < len(rows):  # committed: the sender may hand these over
            kept = rows[handed:] if handed else rows
            size = sum(r[5] for r in kept)
            self._pending.append((kept, t_write, size))
            self._pending_in += size  # after the append: the sender may take it at once (never before)
        self._batch_rows = []
        return handed, self._batch_rejected

    def hand_over_new(self, rows: list[SpoolRow]) -> None:
        """Spool.append_many's before_write: the writer publishes its own new rows while they are inserted
        and committed, when nothing is waiting before them; else the sender takes them from the file.
        Never blocks on ``lock`` (the sender may hold it while waiting for the spool's lock)."""
        self._batch_rows = rows
        if not self._connected.is_set() or self.resync or self.retry_from is not None:
            return
        if not self.lock.acquire(blocking=False):
            return
        try:
            if self.resync or self.retry_from is not None or self.cursor != rows[0][0] - 1:
                return
            room = self.handover - len(self.outstanding)
            if room <= 0:
                return
            if room < len(rows):
                rows = rows[:room]
            self._batch_first = rows[0][0]
            self._batch_rejected = self._publish_rows(rows, self._t_write)
            self._batch_handed = len(rows)
        finally:
            self.lock.release()

    def drop_pending(self) -> None:
        """Forget the rows kept in memory (sender thread only): the sender reads them from the file."""
        pending = self._pending
        while pending:
            self._pending_out += pending.popleft()[2]

    def _forget_batch(self, first_id: int) -> None:
        """A batch handed over before its commit failed: its ids will be used again, so its PUBACKs must
        not delete anything and the sender must not think it sent them. (paho still delivers what it
        has: the broker may get records whose write() raised; nothing is lost either way.)"""
        with self.lock:
            for mid in [m for m, e in self.outstanding.items() if e[0] >= first_id]:
                del self.outstanding[mid]
            if self.cursor >= first_id:
                self.cursor = first_id - 1

    def _log_rejected(self, topic: str, reason: object) -> None:
        now = time.monotonic()
        last = self._rejected_logged.get(topic)
        if last is None or now - last >= 60.0:
            self._rejected_logged[topic] = now
            log.warning("MQTT broker refused a message on %s (%s); dropped (%d refused so far; "
                        "check the broker's ACL for this device)", topic, reason, self.rejected)

    # -- PUBACKs ---------------------------------------------------------------------------

    def drain_acks(self) -> None:
        """Take the PUBACKs paho reported: latencies and counters; the delivered ids wait for delete_done()."""
        if not self.acks:
            return
        done: list[int] = []
        publish_lat: list[float] = []
        delivery_lat: list[float] = []
        with self.lock:
            failed = self._match_acks(done, publish_lat, delivery_lat)
        self.acked += len(publish_lat)
        self.publish_latency.extend(publish_lat)
        self.delivery_latency.extend(delivery_lat)
        m = self.metrics
        if m:
            if publish_lat:
                m.acked.inc(len(publish_lat))
                for v in publish_lat:
                    m.latency.observe(v)
                for v in delivery_lat:
                    m.delivery.observe(v)
            if failed:
                m.rejected.inc(failed)
        if done:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.extend(done)

    def _match_acks(self, done: list[int], publish_lat: list[float], delivery_lat: list[float]) -> int:
        """Pop each queued PUBACK's message from ``outstanding`` (``lock`` held); returns how many the
        broker refused for good."""
        acks = self.acks
        outstanding = self.outstanding
        failed = 0
        while acks:
            mid, reason, t_ack = acks.popleft()
            entry = outstanding.pop(mid, None)
            if entry is None:  # availability / discovery messages
                continue
            code = getattr(reason, "value", 0)
            if code >= 0x80:
                if self._refused(entry, code, reason):
                    done.append(entry[0])
                    failed += 1
                continue
            done.append(entry[0])
            publish_lat.append(t_ack - entry[1])
            delivery_lat.append(t_ack - entry[2])
        return failed

    def _refused(self, entry: tuple[int, float, float, str], code: int, reason: Any) -> bool:
        """A PUBACK failure code: True when the message is refused for good (it leaves the spool), False
        when the broker asks for it again later (busy, over quota)."""
        spool_id, _, _, topic = entry
        if code in TRANSIENT:
            # The broker is busy or over quota: keep it and send it (and what follows) again soon.
            self.retry_from = spool_id if self.retry_from is None else min(self.retry_from, spool_id)
            self.retry_at = time.monotonic() + 1.0
            self.retries += 1
            if self.retries == 1 or self.retries % 1000 == 0:
                log.warning("MQTT broker asked to retry a message on %s (%s); will resend it", topic, reason)
            return False
        self.rejected += 1
        self._log_rejected(topic, reason)
        return True
