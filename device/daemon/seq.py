"""Sequence numbers that survive restarts (``state_dir/seq.json``)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("spinal.daemon")


class SeqCounter:
    """Per-kind record sequence numbers, persistent in ``state_dir/seq.json``.

    Numbers are reserved in blocks (the reservation is written and fsynced before a number of
    the block is used), so a crash loses at most the unused part of a block but never repeats a
    number. Without a state directory the numbers start at 0 for each run.
    """

    BLOCK = 1000

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / "seq.json" if state_dir else None
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self._reserved = {str(k): int(v) for k, v in saved.items()}
            except (ValueError, OSError, AttributeError) as exc:
                log.warning("%s: unreadable (%s); sequence numbers restart at 0", self.path, exc)
        self._next = dict(self._reserved)

    def next(self, kind: str) -> int:
        """The next number of ``kind`` (reserving a new block on disk first when needed)."""
        with self._lock:
            n = self._next.get(kind, 0)
            self._next[kind] = n + 1
            if self.path is not None and n >= self._reserved.get(kind, 0):
                self._reserved[kind] = n + self.BLOCK
                self._save()
            return n

    def _save(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(self._reserved, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("%s: cannot save sequence numbers (%s)", self.path, exc)
