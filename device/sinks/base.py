"""The sink interface every output of the daemon implements.

A sink accepts :class:`Record` objects. ``write`` must not block the sampling path for long;
a durable sink has the record on disk before ``write`` returns (DESIGN.md principle 4).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

# The kinds of record the daemon writes, declared once: the config's sink `kinds`, the daemon and the sinks
# name them from here.
RecordKind = Literal["prediction", "reading", "status"]
RECORD_KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
# The kinds whose data are values (a sensor's reading, a model's prediction), not events.
ValueKind = Literal["prediction", "reading"]
VALUE_KINDS: tuple[ValueKind, ...] = get_args(ValueKind)


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
    """Write records (one or a batch); flush buffered ones; close (flushing first).

    ``stats`` and ``register_metrics`` are part of every sink: one with nothing to report returns
    ``{}`` and registers nothing. The daemon hands a sink every record that accumulated in one
    ``write_many`` call; ``write`` is the same for one record.
    """

    name: str

    def write(self, record: Record) -> None:
        """Accept one record (durable sinks: on disk before returning)."""

    def write_many(self, records: Sequence[Record]) -> None:
        """Accept several records at once (durable sinks: all on disk before returning, or none accepted)."""

    def flush(self) -> None:
        """Push out anything buffered."""

    def close(self) -> None:
        """Flush and release resources; the sink accepts nothing after this."""

    def stats(self) -> dict[str, Any]:
        """Plain numbers for /healthz (e.g. ``spool_depth``, ``connected``); ``{}`` when there are none."""

    def register_metrics(self, registry: Any, namespace: str) -> None:
        """Create the sink's own Prometheus metrics on ``registry`` under ``namespace`` (or none)."""


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, without importing numpy
        return obj.tolist()
    return str(obj)  # a Path, a datetime ...: its text


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def encode_record(record: Record) -> bytes:
    """One record as compact, strict JSON (UTF-8): NaN/inf become null (JSON has no NaN: strict parsers and
    Home Assistant reject it), numpy values become numbers. Every sink writes this."""
    body = record.to_dict()
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False, default=_json_default).encode()
    except ValueError:
        body = _finite(json.loads(json.dumps(body, default=_json_default)))
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
