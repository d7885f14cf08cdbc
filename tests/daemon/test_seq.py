"""Sequence numbers across restarts: +1 after a clean stop, a jump (never a repeat) after a crash,
and no number past the persisted block when seq.json cannot be saved."""

from __future__ import annotations

import errno
import json

import pytest

from device.daemon.seq import SeqCounter, SeqUnavailable


def issue(counter: SeqCounter, kind: str, n: int) -> list[int]:
    return [counter.next(kind) for _ in range(n)]


def test_a_clean_restart_continues_at_the_next_number_per_kind(tmp_path):
    a = SeqCounter(tmp_path)
    assert issue(a, "status", 5) == [0, 1, 2, 3, 4] and issue(a, "prediction", 2) == [0, 1]
    a.close()
    b = SeqCounter(tmp_path)
    # Before: 1000 (the next block) after every restart, clean or not: consumers counted phantom losses.
    assert issue(b, "status", 2) == [5, 6] and issue(b, "prediction", 1) == [2]
    assert issue(b, "reading", 1) == [0]
    b.close()
    assert issue(SeqCounter(tmp_path), "status", 1) == [7]


def test_a_crash_skips_to_the_end_of_the_reserved_block_and_never_repeats(tmp_path):
    a = SeqCounter(tmp_path)
    issue(a, "status", 5)  # no close(): SIGKILL
    b = SeqCounter(tmp_path)
    assert b.next("status") == SeqCounter.BLOCK
    b.close()
    c = SeqCounter(tmp_path)  # the crash-restart's own clean stop continues by one
    assert c.next("status") == SeqCounter.BLOCK + 1


def test_the_file_of_the_previous_format_is_read(tmp_path):
    (tmp_path / "seq.json").write_text(json.dumps({"status": 3000}))
    assert SeqCounter(tmp_path).next("status") == 3000


def test_no_number_past_the_persisted_block_while_seq_json_cannot_be_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(SeqCounter, "BLOCK", 10)
    monkeypatch.setattr(SeqCounter, "RETRY_S", 0.0)
    a = SeqCounter(tmp_path)
    issued = issue(a, "status", 3)
    real_write = SeqCounter._write

    def disk_full(self, body):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SeqCounter, "_write", disk_full)
    issued += issue(a, "status", 7)  # the rest of the persisted block is still safe to use
    for _ in range(50):
        with pytest.raises(SeqUnavailable, match="No space left"):
            a.next("status")
    assert a.error and a.save_errors == 50
    a.close()  # cannot record "next" either: the next start must still not repeat
    monkeypatch.setattr(SeqCounter, "_write", real_write)
    b = SeqCounter(tmp_path)
    after = issue(b, "status", 5)
    # Before: the counter went on issuing 10, 11, ... unsaved; after the restart it issued them again.
    assert not set(after) & set(issued) and after[0] == 10
    assert b.error is None


def test_a_save_that_works_again_resumes_numbering_without_a_gap(tmp_path, monkeypatch):
    monkeypatch.setattr(SeqCounter, "BLOCK", 2)
    monkeypatch.setattr(SeqCounter, "RETRY_S", 0.0)
    a = SeqCounter(tmp_path)
    issue(a, "status", 2)
    real_write = SeqCounter._write
    monkeypatch.setattr(SeqCounter, "_write", lambda self, body: (_ for _ in ()).throw(OSError(errno.EMFILE, "x")))
    with pytest.raises(SeqUnavailable):
        a.next("status")
    monkeypatch.setattr(SeqCounter, "_write", real_write)
    assert a.next("status") == 2 and a.error is None


def test_after_close_no_number_is_issued(tmp_path):
    a = SeqCounter(tmp_path)
    a.next("status")
    a.close()
    with pytest.raises(SeqUnavailable):
        a.next("status")
