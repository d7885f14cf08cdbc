"""Exact percentiles: one definition (:func:`quantile`) and one window of recent values (:class:`Recent`).

Used by /healthz (the daemon's lateness and latency windows), the sinks' ``stats()``, ``spinal bench`` and
the benchmarks, so that a p99 means the same thing wherever it is printed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``ordered`` (sorted, not empty): the value at index ``int(q * n)``, the
    last one for ``q = 1`` (nearest rank, no interpolation: always a value that was measured)."""
    if not ordered:
        raise ValueError("the quantile of no values")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Recent:
    """The last ``n`` values of a measurement, for exact percentiles in /healthz, sinks and benchmarks.

    Held as 8-byte doubles in a ring (32 KiB for 4096 values; a deque of float objects took 128 KiB).
    One thread adds; any thread may read (a reader sees the values of one moment)."""

    def __init__(self, n: int = 4096) -> None:
        if n < 1:
            raise ValueError("a window of at least one value")
        self._n = n
        self._values = array("d")
        self._next = 0  # where the next value goes once the ring is full

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: float) -> None:
        """Remember one value (the oldest falls out once ``n`` are held)."""
        if len(self._values) < self._n:
            self._values.append(value)
            return
        self._values[self._next] = value
        self._next = (self._next + 1) % self._n

    def extend(self, values: Iterable[float]) -> None:
        """Remember several values at once (in slices, not one call per value: the MQTT sender adds two
        per acknowledged message)."""
        todo = array("d", values)
        held = self._values
        room = self._n - len(held)
        if room > 0:
            held.extend(todo[:room])
            todo = todo[room:]
        while todo:
            k = min(len(todo), self._n - self._next)
            held[self._next:self._next + k] = todo[:k]
            self._next = (self._next + k) % self._n
            todo = todo[k:]

    def values(self) -> list[float]:
        """The held values (a copy, not in arrival order once the ring has wrapped)."""
        return self._values.tolist()

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the held values (:func:`quantile`); ``None`` when empty."""
        return quantile(sorted(self._values), q) if self._values else None

    def summary(self, scale: float = 1.0, digits: int = 4) -> dict[str, float | int] | None:
        """``n``, p50, p90, p99 and max of the held values times ``scale``; ``None`` when empty."""
        values = sorted(self._values)
        if not values:
            return None
        out: dict[str, float | int] = {"n": len(values)}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
            out[name] = round(quantile(values, q) * scale, digits)
        return out
