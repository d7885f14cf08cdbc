"""Sequence numbers that survive restarts (``state_dir/seq.json``).

Numbers are reserved in blocks: the reservation is written and fsynced before the first number of
a block is issued, so a number is never issued twice, not even across a crash. A clean shutdown
also records the next number of each kind, so the next start continues at exactly that number
(``seq`` goes up by one per kind across restarts, as docs/mqtt.md promises). After a crash
(SIGKILL, power cut) the next start continues at the end of the reserved block: up to
``BLOCK - 1`` numbers are skipped, never reused.

When the reservation cannot be saved (a full disk, no file descriptors), no number past the
persisted block is issued: :meth:`SeqCounter.next` raises :class:`SeqUnavailable` until a save
succeeds (retried at most once per ``RETRY_S``), and the daemon drops that record, counts it and
reports itself degraded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from device.errors import SpinalError

log = logging.getLogger("spinal.daemon")


class SeqUnavailable(SpinalError):
    """No sequence number can be issued: the next block could not be reserved on disk."""


class SeqCounter:
    """Per-kind record sequence numbers, persistent in ``state_dir/seq.json``.

    File format: ``{"reserved": {KIND: N}, "next": {KIND: N}}`` (``next`` only after a clean
    shutdown); the older ``{KIND: N}`` (reserved only) is read too. Without a state directory the
    numbers start at 0 for each run.
    """

    BLOCK = 1000
    RETRY_S = 1.0

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / "seq.json" if state_dir else None
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}  # persisted: no number >= this is issued
        self._retry_at = 0.0
        self.error: str | None = None  # why the last reservation failed (None once one succeeds)
        self.save_errors = 0
        self._closed = False
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            saved = json.loads(self.path.read_text())
            if "reserved" in saved:
                self._reserved = {str(k): int(v) for k, v in saved["reserved"].items()}
                self._next = {str(k): int(v) for k, v in (saved.get("next") or {}).items()}
            else:  # the format before clean shutdowns were recorded
                self._reserved = {str(k): int(v) for k, v in saved.items()}
        except (ValueError, OSError, AttributeError, TypeError) as exc:
            log.warning("%s: unreadable (%s); sequence numbers restart at 0", self.path, exc)
            self._reserved, self._next = {}, {}
            return
        for kind, reserved in self._reserved.items():
            self._next.setdefault(kind, reserved)  # a clean stop: continue at next; else after the block
        # Numbers from here on need a fresh reservation (which also drops the clean-stop mark).
        self._reserved = dict(self._next)

    def next(self, kind: str) -> int:
        """The next number of ``kind`` (reserving a new block on disk first when needed).

        Raises :class:`SeqUnavailable` when the block cannot be reserved."""
        with self._lock:
            if self._closed:  # the next numbers are on disk for the next start: issuing one here would repeat
                raise SeqUnavailable(f"{self.path}: the counter is closed")
            n = self._next.get(kind, 0)
            if self.path is not None and n >= self._reserved.get(kind, 0):
                self._reserve(kind, n)
            self._next[kind] = n + 1
            return n

    def _reserve(self, kind: str, n: int) -> None:
        now = time.monotonic()
        if self.error is not None and now < self._retry_at:
            raise SeqUnavailable(f"{self.path}: cannot reserve sequence numbers ({self.error})")
        reserved = {**self._reserved, kind: n + self.BLOCK}
        try:
            self._write({"reserved": reserved})
        except OSError as exc:
            self.save_errors += 1
            self._retry_at = now + self.RETRY_S
            if self.error is None:
                log.error("%s: cannot save sequence numbers (%s); records get no number (and are dropped) "
                          "until it can be saved", self.path, exc)
            self.error = str(exc)
            raise SeqUnavailable(f"{self.path}: cannot reserve sequence numbers ({exc})") from None
        if self.error is not None:
            log.info("%s: sequence numbers saved again", self.path)
        self.error = None
        self._reserved = reserved

    def _write(self, body: dict[str, dict[str, int]]) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(body, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        """A clean stop: record the next number of each kind, so the next start continues without a jump."""
        if self.path is None:
            return
        with self._lock:
            self._closed = True
            try:
                self._write({"reserved": self._reserved, "next": dict(self._next)})
            except OSError as exc:  # the reservations on disk still hold: the next start jumps, never repeats
                log.warning("%s: cannot record the next sequence numbers (%s); the next start skips to the "
                            "end of the reserved blocks", self.path, exc)
