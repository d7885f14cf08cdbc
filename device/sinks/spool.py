"""A durable, bounded FIFO of outgoing MQTT messages: SQLite in WAL mode, in the state directory.

The contract (DESIGN.md principle 4, issue 7):

- ``append`` returns only after the message is committed to disk (``synchronous=FULL`` by default:
  the WAL is fsynced on every commit, so a power cut loses nothing acknowledged; ``normal`` survives a
  SIGKILL of the process but not a power cut, and is several times faster on slow storage).
- A message leaves the spool only through ``delete`` (after the broker's PUBACK) or ``drop-oldest``
  when the spool is over its bounds (count or bytes); every drop is counted, persistently.
- ``fetch`` returns messages in append order, so a restart replays them in order.
- Opening after a SIGKILL is clean (SQLite recovers the WAL). A file that is not a database at all
  (truncated, overwritten) is moved aside as ``<name>.corrupt-<time>`` and a fresh spool is started,
  loudly: the daemon keeps running and the evidence is kept.
- One process at a time: an exclusive ``flock`` on ``<name>.lock`` (released by the kernel on SIGKILL).

The spool is thread safe (one connection behind a lock): the daemon appends from its own thread, the
MQTT sender fetches and deletes from another.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Literal, get_args

from device.errors import BadInput, SpinalError
from device.schema import invalid

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    retain  INTEGER NOT NULL DEFAULT 0,
    created REAL    NOT NULL,
    size    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
# Rows per INSERT statement, largest first: a batch goes in as a few multi-row INSERTs (one statement
# run, one AUTOINCREMENT update each) rather than one run per row; a few sizes keep the statement cache small.
_INSERT_ROWS = (64, 16, 4, 1)
_PER_MESSAGE_OVERHEAD = 64  # bytes counted per row on top of topic + payload (row header, index)

_RANGE_SIZE = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE id BETWEEN ? AND ?"
_RANGE_DELETE = "DELETE FROM messages WHERE id BETWEEN ? AND ?"
_RANGE_DELETE_RETURNING = "DELETE FROM messages WHERE id BETWEEN ? AND ? RETURNING size"
_SHORT_RANGE = 32  # ids; below this one statement returning each size costs less than two statements
# One stored message as a plain tuple: (id, topic, payload, retain, created, size).
SpoolRow = tuple[int, str, bytes, int, float, int]


Synchronous = Literal["full", "normal"]  # SQLite's PRAGMA synchronous


@dataclass(frozen=True)
class SpoolOptions:
    """Where the spool lives and how big it may grow (``[mqtt.spool]`` in the daemon's config)."""

    path: Path
    max_messages: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    synchronous: Synchronous = "full"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.max_messages < 1:
            raise invalid("max_messages", f"mqtt.spool.max_messages must be at least 1, got {self.max_messages}")
        if self.max_bytes < 1024:
            raise invalid("max_bytes", f"mqtt.spool.max_bytes must be at least 1024, got {self.max_bytes}")
        if self.synchronous not in get_args(Synchronous):
            raise invalid("synchronous", f"mqtt.spool.synchronous must be 'full' or 'normal', got {self.synchronous!r}")


@dataclass(frozen=True)
class SpooledMessage:
    """One stored message; ``id`` is its position in the FIFO."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    created: float  # wall-clock seconds when it was appended
    size: int


class SpoolError(SpinalError):
    """A write to the spool failed (disk full, I/O error). The message names SQLite's reason; the
    failed transaction was rolled back, so the spool holds what it held before."""


def _reason(exc: sqlite3.Error) -> str:
    """SQLite's message and its error name, on one line: ``database or disk is full (SQLITE_FULL)``."""
    name = getattr(exc, "sqlite_errorname", None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{text} ({name})" if name and name not in text else text


@cache
def _insert_sql(n: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    return f"INSERT INTO messages (id, topic, payload, retain, created, size) VALUES {values}"


def _insert(db: sqlite3.Connection, rows: list[SpoolRow]) -> None:
    """Insert ``rows`` with multi-row INSERTs of the sizes in _INSERT_ROWS."""
    if len(rows) == 1:  # write() of one record
        db.execute(_insert_sql(1), rows[0])
        return
    start, total = 0, len(rows)
    for n in _INSERT_ROWS:
        sql = _insert_sql(n)
        while total - start >= n:
            db.execute(sql, list(chain.from_iterable(rows[start:start + n])))
            start += n


def _ranges(ids: list[int]) -> list[tuple[int, int]]:
    """``ids`` as (first, last) ranges of consecutive ids, ascending; repeats ignored."""
    ids = sorted(set(ids))
    if not ids:
        return []
    if ids[-1] - ids[0] + 1 == len(ids):  # the usual case: one unbroken run
        return [(ids[0], ids[-1])]
    ranges: list[tuple[int, int]] = []
    low = high = ids[0]
    for i in ids[1:]:
        if i > high + 1:
            ranges.append((low, high))
            low = i
        high = max(high, i)
    ranges.append((low, high))
    return ranges


class _Corrupt(sqlite3.DatabaseError):
    """The file opened but its content failed SQLite's own check."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Not a database / malformed, as opposed to locked, unwritable or out of space."""
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class Spool:
    """The durable FIFO. Use as a context manager or call :meth:`close`."""

    def __init__(self, options: SpoolOptions) -> None:
        self.options = options
        self.path = options.path
        self._lock = threading.RLock()
        self._closed = False
        self.corrupt_recoveries = 0
        self.dropped = 0  # this process
        self._lock_fd = self._take_file_lock()
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        self._count, self._bytes = int(count), int(size)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
        self._dropped_total = int(row[0]) if row else 0
        self._next_id = self._read_next_id()

    # -- opening -----------------------------------------------------------------------------

    def _take_file_lock(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BadInput(f"cannot create the MQTT spool at {self.path}: {exc.strerror}; "
                           "check mqtt.spool.path and the state directory's permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BadInput(f"MQTT spool {self.path} is in use by another process; "
                           "run one daemon per state directory") from None
        return fd

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            # Create it 0600 ourselves: SQLite gives the -wal and -shm files the database's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"journal_mode is {mode}, not wal")
            db.execute(f"PRAGMA synchronous={self.options.synchronous.upper()}")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise _Corrupt(f"quick_check: {ok}")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise BadInput(f"cannot open the MQTT spool {self.path}: {exc}; "
                               "check mqtt.spool.path and the disk") from None
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            log.error("MQTT spool %s is unreadable (%s); moved it to %s and started an empty spool",
                      self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.replace(Path(f"{aside}{suffix}"))
            self.corrupt_recoveries += 1
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc2:
                raise BadInput(f"cannot open the MQTT spool {self.path}: {exc2}; "
                               "check mqtt.spool.path and the disk") from None
        except OSError as exc:
            raise BadInput(f"cannot open the MQTT spool {self.path}: {exc.strerror}; "
                           "check mqtt.spool.path and the disk") from None

    # -- the FIFO ----------------------------------------------------------------------------

    def append(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        """Store one message durably; returns its id, or None when it alone exceeds ``max_bytes``
        (it is then counted as dropped). Drops the oldest messages when over the bounds."""
        return self.append_many([(topic, payload, retain)])[0]

    def append_many(self, messages: Iterable[tuple[str, bytes, bool]],
                    before_write: Callable[[list[SpoolRow]], None] | None = None,
                    ) -> list[int | None]:
        """Store several messages in one transaction (one fsync); returns their ids in order (None for
        a message bigger than ``max_bytes`` on its own, which is dropped and counted).

        ``before_write(rows)`` is called with the new messages as :data:`SpoolRow` tuples, with the ids
        they are about to get, before the transaction starts (the spool's lock is held, so no
        other write can come between): the MQTT sink hands them to the network while the insert and the
        commit's fsync run. Nothing is durable until this method returns; when it raises, nothing of the
        batch is in the spool. (A batch bigger than the spool loses its oldest messages to drop-oldest
        in the same transaction; they were handed over all the same.)

        A failed write (disk full, I/O error) raises :class:`SpoolError` with SQLite's own reason; the
        transaction is rolled back and depth, bytes and the drop counters are re-read from the file,
        so they stay equal to what the table holds."""
        now = time.time()
        rows: list[SpoolRow] = []
        ids: list[int | None] = []
        oversize = 0
        max_bytes = self.options.max_bytes
        with self._lock:
            self._check_open()
            next_id = self._next_id
            for topic, payload, retain in messages:
                size = len(topic.encode()) + len(payload) + _PER_MESSAGE_OVERHEAD
                if size > max_bytes:
                    oversize += 1
                    ids.append(None)
                    continue
                # Explicit ids: the ones before_write was told, or the insert fails (never silently others).
                rows.append((next_id, topic, payload, int(retain), now, size))
                ids.append(next_id)
                next_id += 1
            if before_write is not None and rows:
                before_write(rows)
            with self._transaction(f"could not store {len(rows)} message(s)",
                                   "nothing of this batch was kept") as db:
                if rows:
                    _insert(db, rows)
                    self._count += len(rows)
                    self._bytes += sum(r[5] for r in rows)
                dropped = self._drop_over_bounds(db) + oversize
                if dropped:
                    self._add_dropped(db, dropped)
            self._next_id = next_id
        if oversize:
            log.warning("MQTT spool: %d message(s) larger than mqtt.spool.max_bytes (%d) dropped",
                        oversize, self.options.max_bytes)
        return ids

    def _read_next_id(self) -> int:
        """The id AUTOINCREMENT would give next: one past the largest ever given out."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        top = self._db.execute("SELECT MAX(id) FROM messages").fetchone()[0]
        return max(int(row[0]) if row else 0, int(top or 0)) + 1

    @contextlib.contextmanager
    def _transaction(self, failed: str, kept: str, first: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (``first``, then BEGIN IMMEDIATE ... COMMIT). When anything fails it is undone
        (:meth:`_undo`); a SQLite error becomes one :class:`SpoolError`: ``failed``, SQLite's reason, ``kept``."""
        db = self._db
        before = (self._count, self._bytes, self.dropped, self._dropped_total)
        try:
            if first is not None:
                db.execute(first)
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._undo(db, before)
            raise SpoolError(f"MQTT spool {self.path}: {failed}: {_reason(exc)}; {kept}") from None
        except BaseException:
            self._undo(db, before)
            raise

    def _undo(self, db: sqlite3.Connection, before: tuple[int, int, int, int]) -> None:
        """After a failed write: roll back what SQLite has not already rolled back itself (after
        SQLITE_FULL or an I/O error it may have), then take the counters from the file."""
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the original error is the one to report
                log.debug("MQTT spool: ROLLBACK after a failed write: %s", exc)
        count, size, dropped, total = before
        try:
            self._next_id = self._read_next_id()
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
            row = db.execute("SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
            total_now = int(row[0]) if row else 0
        except sqlite3.Error as exc:  # cannot even read: keep the values from before the transaction
            log.debug("MQTT spool: recount after a failed write: %s", exc)
            total_now = total
        self._count, self._bytes = count, size
        self.dropped = dropped + (total_now - total)
        self._dropped_total = total_now

    def _drop_over_bounds(self, db: sqlite3.Connection) -> int:
        """Drop the oldest until both bounds hold; returns how many."""
        over_count = self._count - self.options.max_messages
        over_bytes = self._bytes - self.options.max_bytes
        if over_count <= 0 and over_bytes <= 0:
            return 0
        # Walk from the oldest until both bounds hold again.
        drop_ids: list[int] = []
        freed = 0
        for row_id, size in db.execute("SELECT id, size FROM messages ORDER BY id"):
            if len(drop_ids) >= over_count and freed >= over_bytes:
                break
            drop_ids.append(row_id)
            freed += size
        self._delete_ids(db, drop_ids)
        return len(drop_ids)

    def _add_dropped(self, db: sqlite3.Connection, n: int) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('dropped_total', ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))
        self.dropped += n
        self._dropped_total += n

    def _delete_ids(self, db: sqlite3.Connection, ids: list[int]) -> int:
        """Delete ``ids`` as ranges of consecutive ids (acknowledged ids come in order, so a batch is
        usually one range): a short range in one DELETE that returns the sizes, a long one with a count
        and a DELETE (no row per message back to Python)."""
        removed = 0
        for low, high in _ranges(ids):
            if high - low < _SHORT_RANGE:
                sizes = db.execute(_RANGE_DELETE_RETURNING, (low, high)).fetchall()
                removed += len(sizes)
                self._count -= len(sizes)
                self._bytes -= sum(r[0] for r in sizes)
                continue
            n, size = db.execute(_RANGE_SIZE, (low, high)).fetchone()
            if n:
                db.execute(_RANGE_DELETE, (low, high))
                removed += n
                self._count -= n
                self._bytes -= size
        return removed

    def fetch(self, after_id: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """The next ``limit`` messages with ``id > after_id``, oldest first."""
        return [SpooledMessage(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in self.fetch_rows(after_id, limit)]

    def fetch_rows(self, after_id: int = 0, limit: int = 100) -> list[tuple[int, str, bytes, int, float, int]]:
        """Like :meth:`fetch`, as plain ``(id, topic, payload, retain, created, size)`` tuples (the sender's
        hot path: no object per message)."""
        with self._lock:
            self._check_open()
            return self._db.execute(
                "SELECT id, topic, payload, retain, created, size FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit)).fetchall()

    @property
    def last_id(self) -> int:
        """The id of the last message committed (0 before the first); read without the lock."""
        return self._next_id - 1

    def head_cursor(self) -> int:
        """The id just before the oldest stored message (when empty: the last id given out), so that
        ``fetch_rows(head_cursor())`` starts at the head of the FIFO."""
        with self._lock:
            self._check_open()
            oldest = self._db.execute("SELECT MIN(id) FROM messages").fetchone()[0]
            return int(oldest) - 1 if oldest is not None else self._next_id - 1

    def delete(self, ids: Iterable[int]) -> int:
        """Remove delivered messages (ids already gone, e.g. dropped meanwhile, are ignored)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            self._check_open()
            db = self._db
            # A delete lost in a power cut only means a repeat (at-least-once), so it need not wait for
            # an fsync of its own; the next append's FULL commit syncs the WAL, these frames included.
            relaxed = self.options.synchronous == "full"
            try:
                with self._transaction(f"could not remove {len(ids)} delivered message(s)",
                                       "they stay and will be sent again",
                                       first="PRAGMA synchronous=NORMAL" if relaxed else None):
                    removed = self._delete_ids(db, ids)
            finally:
                if relaxed:
                    try:
                        db.execute("PRAGMA synchronous=FULL")
                    except sqlite3.Error as exc:  # pragma: no cover - only on a broken connection
                        log.error("MQTT spool %s: cannot restore synchronous=FULL: %s", self.path, exc)
        return removed

    # -- state -------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages stored (not yet acknowledged by the broker)."""
        return self._count

    @property
    def bytes(self) -> int:
        """Bytes the stored messages count against ``max_bytes``."""
        return self._bytes

    @property
    def dropped_total(self) -> int:
        """Messages dropped over the spool's life (persisted across restarts)."""
        return self._dropped_total

    def oldest_created(self) -> float | None:
        """Wall-clock time the oldest stored message was appended, or None when empty."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT created FROM messages ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def integrity_ok(self) -> bool:
        """Full ``PRAGMA integrity_check`` (slow on big spools; for tests and diagnostics)."""
        with self._lock:
            self._check_open()
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"MQTT spool {self.path} is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            finally:
                os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
