"""The durable spool on its own: order, durability across reopen, bounds with drop-oldest, recovery."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.errors import BadInput
from device.sinks.spool import Spool, SpoolOptions


def opts(tmp_path: Path, **kw) -> SpoolOptions:
    return SpoolOptions(tmp_path / "spool.db", **kw)


def test_fifo_order_delete_and_reopen(tmp_path: Path) -> None:
    with Spool(opts(tmp_path)) as sp:
        ids = [sp.append(f"t/{i % 3}", f"m{i}".encode()) for i in range(20)]
        assert ids == sorted(ids) and len(set(ids)) == 20
        assert [m.payload for m in sp.fetch(0, 5)] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert [m.payload for m in sp.fetch(ids[4], 2)] == [b"m5", b"m6"]
        assert sp.delete(ids[:10]) == 10
        assert sp.delete(ids[:10]) == 0  # already gone: ignored
        depth, size = sp.depth, sp.bytes
        assert depth == 10
    with Spool(opts(tmp_path)) as sp:  # a restart replays what is left, in order
        assert (sp.depth, sp.bytes) == (depth, size)
        assert [m.payload for m in sp.fetch(0, 100)] == [f"m{i}".encode() for i in range(10, 20)]
        assert sp.fetch(0, 1)[0].topic == "t/1"
        assert sp.oldest_created() is not None


@pytest.mark.parametrize("batch", [1, 5, 64, 150])
def test_a_batch_is_stored_whole_and_in_order(tmp_path: Path, batch: int) -> None:
    """Batches go in as multi-row INSERTs of several sizes: every message lands, with its own id, in order."""
    with Spool(opts(tmp_path)) as sp:
        sp.append("t/first", b"first")
        msgs = [(f"t/{i % 7}", f"m{i}".encode(), i % 2 == 0) for i in range(batch)]
        ids = sp.append_many(msgs)
        assert ids == list(range(2, batch + 2)) and sp.depth == batch + 1
        got = sp.fetch(1, 1000)
        assert [(m.id, m.topic, m.payload, m.retain) for m in got] == [
            (i, t, p, r) for i, (t, p, r) in zip(ids, msgs, strict=True)]


def test_delete_of_scattered_and_repeated_ids_removes_exactly_those(tmp_path: Path) -> None:
    """Deletes go by ranges of consecutive ids: gaps, repeats and unordered ids remove exactly the ids given,
    and depth and bytes stay equal to what the table holds."""
    with Spool(opts(tmp_path)) as sp:
        ids = sp.append_many([("t", f"m{i}".encode() * (i + 1), False) for i in range(100)])
        assert sp.last_id == ids[-1]
        gone = [ids[i] for i in (99, 3, 4, 5, 5, 9, 17, 16, 0)] + ids[40:90]  # short ranges and a long one
        assert sp.delete(gone) == 58
        left = [m.id for m in sp.fetch(0, 100)]
        assert left == [i for i in ids if i not in gone]
        size = sp._db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0]
        assert (sp.depth, sp.bytes) == (len(left), size)
        assert sp.last_id == ids[-1]  # the last id given out, deleted or not


def test_drop_oldest_by_count_is_counted_and_persisted(tmp_path: Path) -> None:
    with Spool(opts(tmp_path, max_messages=10)) as sp:
        for i in range(25):
            sp.append("t", f"{i}".encode())
        assert sp.depth == 10
        assert sp.dropped == 15 and sp.dropped_total == 15
        assert [int(m.payload) for m in sp.fetch(0, 100)] == list(range(15, 25))
    with Spool(opts(tmp_path, max_messages=10)) as sp:
        assert sp.dropped == 0 and sp.dropped_total == 15
        sp.append("t", b"25")
        assert sp.dropped_total == 16 and sp.depth == 10


def test_drop_oldest_by_bytes(tmp_path: Path) -> None:
    with Spool(opts(tmp_path, max_bytes=4096)) as sp:
        for i in range(100):
            sp.append("topic", bytes([i]) * 200)
            assert sp.bytes <= 4096
        kept = sp.fetch(0, 1000)
        assert len(kept) == sp.depth and 10 <= sp.depth < 20
        assert sp.dropped == 100 - sp.depth
        assert [m.payload[0] for m in kept] == list(range(100 - sp.depth, 100))  # the newest survive


def test_message_bigger_than_the_spool_is_dropped_not_raised(tmp_path: Path) -> None:
    with Spool(opts(tmp_path, max_bytes=2048)) as sp:
        sp.append("t", b"small")
        assert sp.append("t", b"x" * 5000) is None
        assert sp.dropped == 1 and sp.depth == 1


def test_append_many_is_one_transaction(tmp_path: Path) -> None:
    with Spool(opts(tmp_path, max_messages=5)) as sp:
        ids = sp.append_many([("t", bytes([i]), False) for i in range(8)])
        assert len(ids) == 8 and sp.depth == 5 and sp.dropped == 3


def test_one_process_at_a_time(tmp_path: Path) -> None:
    with Spool(opts(tmp_path)), pytest.raises(BadInput, match="in use by another process"):
        Spool(opts(tmp_path))
    Spool(opts(tmp_path)).close()  # released on close


def test_files_are_private_and_wal(tmp_path: Path) -> None:
    with Spool(opts(tmp_path)) as sp:
        sp.append("t", b"secret reading")
        assert stat.S_IMODE(os.stat(sp.path).st_mode) == 0o600
        wal = Path(f"{sp.path}-wal")
        assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    db = sqlite3.connect(tmp_path / "spool.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not an SQLite database, it was overwritten" * 100)
    with Spool(SpoolOptions(path)) as sp:
        assert sp.corrupt_recoveries == 1 and sp.depth == 0
        sp.append("t", b"ok")
        assert sp.integrity_ok()
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1


def test_bad_options_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"mqtt\.spool\.max_messages"):
        SpoolOptions(tmp_path / "s.db", max_messages=0)
    with pytest.raises(BadInput, match=r"mqtt\.spool\.synchronous"):
        SpoolOptions(tmp_path / "s.db", synchronous="off")  # type: ignore[arg-type]


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInput, match=r"mqtt\.spool\.path"):
        Spool(SpoolOptions(blocker / "spool.db"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.tuples(st.just("append"), st.integers(0, 300)),
                          st.tuples(st.just("ack"), st.integers(1, 5)),
                          st.tuples(st.just("reopen"), st.just(0))), max_size=60),
       st.integers(3, 12))
def test_spool_matches_a_bounded_fifo_model(tmp_path: Path, ops, max_messages) -> None:
    """Against a plain list model: appends, acks of the oldest, reopens (restart)."""
    path = tmp_path / f"h{os.getpid()}-{id(ops)}.db"
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    o = SpoolOptions(path, max_messages=max_messages)
    model: list[bytes] = []
    dropped = 0
    sp = Spool(o)
    try:
        n = 0
        for op, arg in ops:
            if op == "append":
                payload = f"{n}:".encode() + b"x" * arg
                n += 1
                sp.append("t", payload)
                model.append(payload)
                if len(model) > max_messages:
                    model.pop(0)
                    dropped += 1
            elif op == "ack":
                head = sp.fetch(0, arg)
                sp.delete(m.id for m in head)
                del model[: len(head)]
            else:
                sp.close()
                sp = Spool(o)
            assert [m.payload for m in sp.fetch(0, 10_000)] == model
            assert sp.depth == len(model) and sp.dropped_total == dropped
    finally:
        sp.close()


def _table_truth(sp: Spool) -> tuple[int, int, int]:
    db = sqlite3.connect(sp.path)
    try:
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        row = db.execute("SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
    finally:
        db.close()
    return count, size, int(row[0]) if row else 0


@pytest.mark.parametrize("batch", [1, 7])
def test_a_full_disk_reports_sqlite_s_reason_and_counters_stay_true(tmp_path: Path, batch: int) -> None:
    """SQLITE_FULL (a tiny max_page_count stands in for a full disk): SQLite rolls the transaction back
    itself; the error must be SQLite's own reason on one line (not 'cannot rollback - no transaction is
    active'), and depth, bytes and the drop counters must stay what the table holds."""
    with Spool(opts(tmp_path, max_messages=12)) as sp:
        pages = sp._db.execute("PRAGMA page_count").fetchone()[0]
        sp._db.execute(f"PRAGMA max_page_count={pages + 4}")
        errors = []
        for i in range(60):
            try:
                sp.append_many([("t", bytes([i]) * 1500, False)] * batch)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            assert (sp.depth, sp.bytes, sp.dropped_total) == _table_truth(sp), f"after append {i}"
            assert sp.dropped == sp.dropped_total
        assert errors, "the tiny page budget never filled up"
        assert all(e.startswith("SpoolError: ") and "database or disk is full" in e and "SQLITE_FULL" in e
                   and "\n" not in e for e in errors)
        assert not any("rollback" in e for e in errors)
        assert sp.depth <= 12
        sp._db.execute("PRAGMA max_page_count=1073741823")  # space again: the spool works on
        assert sp.append("t", b"after") is not None
        truth = _table_truth(sp)
        assert (sp.depth, sp.bytes, sp.dropped_total) == truth
    with Spool(opts(tmp_path, max_messages=12)) as sp:
        assert (sp.depth, sp.bytes, sp.dropped_total) == truth
        assert sp.fetch(0, 100)[-1].payload == b"after"
