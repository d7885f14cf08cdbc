"""JSON lines sink: one record per line to stdout or to a file with size-based rotation.

File sinks honour an fsync policy: ``always`` (the line is on disk before ``write`` returns),
``flush`` (on disk at each :meth:`JsonlSink.flush`, which the daemon calls every second and
at shutdown) or ``never`` (left to the OS). Rotation renames ``out.jsonl`` to ``out.jsonl.1``
(shifting older ones up to ``keep``) once the file would exceed ``rotate_bytes``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from device.errors import BadInput
from device.sinks.base import Record, encode_record


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
        self._file: IO[str] | None = None
        self._size = 0
        self.rotations = 0
        if options.path is not None and stream is None:
            self._open()

    def _open(self) -> None:
        path = self.options.path
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the sink's life
        except OSError as exc:
            raise BadInput(f"sinks: cannot open {path} for writing ({exc.strerror}); check the directory and "
                           "its permissions (the service can write only under its StateDirectory)") from None
        try:
            self._size = self._file.tell()
        except OSError:  # a pipe or a character device: no size, no rotation
            self._size = 0

    def _rotate(self) -> None:
        path = self.options.path
        assert path is not None and self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.options.keep == 0:
            path.unlink(missing_ok=True)
        else:
            for i in range(self.options.keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
            os.replace(path, path.with_name(f"{path.name}.1"))
        self.rotations += 1
        self._open()

    def write(self, record: Record) -> None:
        """Write one record (see :meth:`write_many`)."""
        self.write_many((record,))

    def write_many(self, records: Sequence[Record]) -> None:
        """Write the records, one line each, rotating by size; with ``fsync = "always"`` on disk on return."""
        lines = [encode_record(r).decode() + "\n" for r in records]
        with self._lock:
            if self._closed:
                raise RuntimeError(f"sink {self.name!r} is closed")
            if self._file is None:
                stream = self._stream or sys.stdout
                stream.write("".join(lines))
                stream.flush()
                return
            for line in lines:
                size = len(line.encode("utf-8"))
                if self.options.rotate_bytes and self._size and self._size + size > self.options.rotate_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += size
            self._file.flush()
            if self.options.fsync == "always":
                os.fsync(self._file.fileno())

    def stats(self) -> dict[str, Any]:
        """Rotations so far (the daemon adds its own write counts)."""
        return {"type": "jsonl", "rotations": self.rotations}

    def register_metrics(self, registry: Any, namespace: str) -> None:
        """The JSON lines sink has no metrics of its own (the daemon counts its records and errors)."""

    def flush(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._file is None:
                (self._stream or sys.stdout).flush()
                return
            self._file.flush()
            if self.options.fsync != "never":
                os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


def build_jsonl(options: JsonlOptions, ctx: object) -> JsonlSink:
    """Sink factory entry (see :mod:`device.sinks.factory`)."""
    return JsonlSink(options, name=getattr(ctx, "name", "jsonl"))
