"""The sink interface every output of the daemon implements.

A sink accepts :class:`Record` objects. ``write`` must not block the sampling path for long;
a durable sink has the record on disk before ``write`` returns (DESIGN.md principle 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

RecordKind = Literal["reading", "prediction", "status"]


@dataclass(frozen=True)
class Record:
    """One message out of the daemon.

    ``seq`` increases by one per record and per kind for the life of the device's state
    directory, so a consumer can count what it got; ``time_unix`` is wall-clock seconds
    (for humans and brokers), ``mono_ns`` the monotonic timestamp of the data itself.
    ``source`` is the sensor id for readings and the model name for predictions.
    """

    kind: RecordKind
    seq: int
    time_unix: float
    mono_ns: int
    device_id: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready payload."""
        return {
            "kind": self.kind, "seq": self.seq, "time": self.time_unix, "mono_ns": self.mono_ns,
            "device": self.device_id, "source": self.source, "data": self.data,
        }


@runtime_checkable
class Sink(Protocol):
    """Write records; flush buffered ones; close (flushing first)."""

    name: str

    def write(self, record: Record) -> None:
        """Accept one record (durable sinks: on disk before returning)."""

    def flush(self) -> None:
        """Push out anything buffered."""

    def close(self) -> None:
        """Flush and release resources; the sink accepts nothing after this."""
