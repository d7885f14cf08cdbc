"""JSON lines sink: one record per line to stdout or to a file with size-based rotation.

File sinks honour an fsync policy: ``always`` (the line is on disk before ``write`` returns),
``flush`` (on disk at each :meth:`JsonlSink.flush`, which the daemon calls every second and
at shutdown) or ``never`` (left to the OS). Rotation renames ``out.jsonl`` to ``out.jsonl.1``
(shifting older ones up to ``keep``) once the file would exceed ``rotate_bytes``.

The file is written with plain ``os.write`` calls, so the sink knows exactly which bytes reached
the file. Lines that could not be written (a full disk, a reopen after rotation that failed) are
kept in order, up to ``MAX_PENDING_LINES``, and written first once the file can be (re)opened;
reopening is retried at most once per ``RETRY_S``. Meanwhile ``write_many`` raises
:class:`JsonlUnavailable` (the records are kept), so the daemon reports the sink degraded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from device.errors import BadInput
from device.sinks.base import Record, encode_record

if TYPE_CHECKING:
    from device.sinks.factory import SinkContext

MAX_PENDING_LINES = 100_000
RETRY_S = 1.0


class JsonlUnavailable(OSError):
    """The file cannot be written now; the records are kept and written once it can."""


@dataclass(frozen=True)
class JsonlOptions:
    """``[[sinks]] type = "jsonl"``: ``path`` (absent = stdout), rotation and fsync policy."""

    path: Path | None = None
    rotate_bytes: int = field(default=10 * 1024 * 1024, metadata={"min": 0})
    keep: int = field(default=5, metadata={"min": 0, "max": 1000})
    fsync: Literal["always", "flush", "never"] = "always"


class JsonlSink:
    """Writes records as compact JSON, one per line."""

    def __init__(self, options: JsonlOptions, name: str = "jsonl", stream: IO[str] | None = None) -> None:
        self.name = name
        self.options = options
        self._lock = threading.Lock()
        self._closed = False
        self._stream: IO[str] | None = stream
        self._fd: int | None = None
        self._size = 0
        self._pending: deque[bytes] = deque()
        self._retry_at = 0.0
        self._torn = False  # the first pending line is the rest of one partly written: no rotation before it
        self.error: str | None = None
        self.rotations = 0
        self.dropped = 0
        self.reopen_failures = 0
        if options.path is not None and stream is None:
            try:
                self._open()
            except OSError as exc:
                raise BadInput(f"sinks: cannot open {options.path} for writing ({exc.strerror}); check the "
                               "directory and its permissions (the service can write only under its "
                               "StateDirectory)") from None

    # ---------------------------------------------------------------- the file

    def _open_fd(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _open(self) -> None:
        path = self.options.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_fd(path)
        try:
            self._size = os.lseek(fd, 0, os.SEEK_END)
        except OSError:  # a pipe or a character device: no size, no rotation
            self._size = 0
        self._fd = fd

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _rotate(self) -> None:
        """Rename the full file away; the caller opens a new one (a failure there is retried later)."""
        path = self.options.path
        assert path is not None and self._fd is not None
        if self.options.fsync != "never":
            os.fsync(self._fd)
        self._close_fd()
        if self.options.keep == 0:
            path.unlink(missing_ok=True)
        else:
            for i in range(self.options.keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
            os.replace(path, path.with_name(f"{path.name}.1"))
        self.rotations += 1

    def _write_line(self, line: bytes) -> None:
        """Write one whole line; on an error the unwritten rest stays first in the queue."""
        assert self._fd is not None
        view = memoryview(line)
        while view:
            try:
                n = os.write(self._fd, view)
                if n == 0:  # nothing taken and no error: treat as a full device rather than spin
                    raise OSError(errno.ENOSPC, "no space left on device (write took no bytes)")
            except OSError:
                self._pending[0] = bytes(view)
                self._torn = self._torn or len(view) < len(line)
                raise
            view = view[n:]
            self._size += n

    def _drain(self) -> None:
        """Write every pending line (rotating as needed); raise :class:`JsonlUnavailable` if some are left."""
        if not self._pending:
            return
        try:
            while self._pending:
                if self._fd is None:
                    if time.monotonic() < self._retry_at:
                        raise JsonlUnavailable(self.error or "waiting to retry")
                    self._open()
                line = self._pending[0]
                limit = self.options.rotate_bytes
                if limit and not self._torn and self._size and self._size + len(line) > limit:
                    self._rotate()
                    continue
                self._write_line(line)
                self._pending.popleft()
                self._torn = False
        except OSError as exc:
            if not isinstance(exc, JsonlUnavailable):
                self.error = f"{self.options.path}: {exc.strerror or exc}"
                self.reopen_failures += 1
                self._retry_at = time.monotonic() + RETRY_S
                self._close_fd()  # reopened (and appended to) on the next try
            raise JsonlUnavailable(f"{self.error}; {len(self._pending)} records kept, retrying") from None
        if self.error is not None:
            self.error = None

    def _queue(self, lines: list[bytes]) -> None:
        self._pending.extend(lines)
        over = len(self._pending) - MAX_PENDING_LINES
        for _ in range(max(0, over)):
            self._pending.popleft()
            self.dropped += 1

    # ---------------------------------------------------------------- the sink

    def write(self, record: Record) -> None:
        """Write one record (see :meth:`write_many`)."""
        self.write_many((record,))

    def write_many(self, records: Sequence[Record]) -> None:
        """Write the records, one line each, rotating by size; with ``fsync = "always"`` on disk on return."""
        lines = [encode_record(r) + b"\n" for r in records]
        with self._lock:
            if self._closed:
                raise RuntimeError(f"sink {self.name!r} is closed")
            if self.options.path is None or self._stream is not None:
                stream = self._stream or sys.stdout
                stream.write(b"".join(lines).decode())
                stream.flush()
                return
            self._queue(lines)
            self._drain()
            if self.options.fsync == "always" and self._fd is not None:
                os.fsync(self._fd)

    def flush(self) -> None:
        """Write what is pending (retrying a failed reopen) and, unless ``fsync = "never"``, fsync."""
        with self._lock:
            if self._closed:
                return
            if self.options.path is None or self._stream is not None:
                (self._stream or sys.stdout).flush()
                return
            self._drain()
            if self.options.fsync != "never" and self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        """Flush (one last try for pending lines) and close; the sink accepts nothing after this."""
        try:
            with self._lock:
                self._retry_at = 0.0
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._close_fd()

    def stats(self) -> dict[str, Any]:
        """Rotations, lines waiting for the file, lines dropped over the bound, the current error."""
        return {"type": "jsonl", "rotations": self.rotations, "pending": len(self._pending),
                "dropped": self.dropped, "error": self.error}

    def register_metrics(self, registry: Any, namespace: str) -> None:
        """The JSON lines sink has no metrics of its own (the daemon counts its records and errors)."""


def build_jsonl(options: JsonlOptions, ctx: SinkContext) -> JsonlSink:
    """Sink factory entry (see :mod:`device.sinks.factory`)."""
    return JsonlSink(options, name=ctx.name)
