"""Prometheus metrics without a dependency: counters, gauges and histograms (with labels) in a :class:`Registry`,
rendered in the text exposition format 0.0.4.

The output is what prometheus-client's ``generate_latest`` wrote for the same metrics, which the daemon used
before (and which pulled http.server, ssl and email into the daemon): a counter ``x`` is exposed as
``x_total`` with a ``x_created`` gauge (Unix time of its creation); a histogram as cumulative ``x_bucket{le=...}``
up to ``+Inf``, ``x_count``, ``x_sum`` and ``x_created``; label names in sorted order; numbers written as Go
writes them (``1.0``, ``1.7e+09``, ``+Inf``, ``NaN``); HELP and label values escaped. The process's own
``process_*`` gauges and ``python_info`` come from :class:`ProcessCollector`.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INF = float("inf")

# One sample: (name, labels, value); a family as rendered: (name, type, help, samples).
Sample = tuple[str, dict[str, str], float]
Rendered = tuple[str, str, str, list[Sample]]
Names = set[str]


class Family:
    """What the registry renders (a metric, or a collector of several families): its name, its families'
    ``(name, type, help, samples)`` and the series names it may expose."""

    name = ""

    def collect(self) -> Iterable[Rendered]:
        """``(name, type, help, samples)`` of each family to expose, in order."""
        raise NotImplementedError

    def exposed_names(self) -> Names:
        """Every sample name this family can expose (for the registry's duplicate check)."""
        raise NotImplementedError


class Registry:
    """The metrics served together on ``/metrics``, in registration order."""

    def __init__(self) -> None:
        self._families: list[Family] = []
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def register(self, family: Family) -> None:
        """Add ``family``; ``ValueError`` if its name or one of its series names is already taken."""
        names = family.exposed_names() | {family.name}
        with self._lock:
            taken = names & self._names
            if taken:
                raise ValueError(f"duplicated timeseries in the metrics registry: {sorted(taken)}")
            self._names |= names
            self._families.append(family)

    def collect(self) -> list[Rendered]:
        """Every family's ``(name, type, help, samples)``."""
        with self._lock:
            families = list(self._families)
        return [out for family in families for out in family.collect()]

    def render(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``) of every metric."""
        lines = []
        for name, kind, doc, samples in self.collect():
            lines.append(f"# HELP {name} {_escape_help(doc)}\n")
            lines.append(f"# TYPE {name} {kind}\n")
            lines.extend(f"{n}{_labels(labels)} {format_value(v)}\n" for n, labels, v in samples)
        return "".join(lines).encode("utf-8")

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of sample ``name`` with exactly ``labels`` (none: no labels), or ``None``."""
        want = labels or {}
        for _, _, _, samples in self.collect():
            for n, got, value in samples:
                if n == name and got == want:
                    return value
        return None


def format_value(value: float) -> str:
    """A number as the Prometheus text format (Go) writes it: ``+Inf``, ``NaN``, ``1.0``, ``1.7e+09``."""
    d = float(value)
    if d == INF:
        return "+Inf"
    if d == -INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Series:
    """One time series of a metric (one set of label values): a value under a lock, and its creation time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0
        self.created = time.time()

    def get(self) -> float:
        """The current value."""
        with self._lock:
            return self._value


class CounterSeries(_Series):
    """A counter's series: only ever goes up."""

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (``ValueError`` if negative)."""
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        with self._lock:
            self._value += amount


class GaugeSeries(_Series):
    """A gauge's series: set to any value, or read from a function when rendered."""

    def __init__(self) -> None:
        super().__init__()
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        """Set the value."""
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.inc(-amount)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the value from ``function()`` each time the gauge is rendered."""
        self._function = function

    def get(self) -> float:
        """The current value (``function()``'s, if one was set)."""
        return float(self._function()) if self._function is not None else super().get()


class HistogramSeries(_Series):
    """A histogram's series: a count per bucket (non-cumulative), the sum and the count of observations."""

    def __init__(self, upper_bounds: Sequence[float]) -> None:
        super().__init__()
        self.upper_bounds = upper_bounds
        self._counts = [0] * len(upper_bounds)

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is at least ``value``."""
        i = bisect_left(self.upper_bounds, value)
        with self._lock:
            self._value += value
            self._counts[min(i, len(self._counts) - 1)] += 1

    def snapshot(self) -> tuple[list[int], float]:
        """The cumulative bucket counts (the last is the count) and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._value
        running, cumulative = 0, []
        for c in counts:
            running += c
            cumulative.append(running)
        return cumulative, total


class _Metric(Family):
    """A metric family: a name, a help text, label names and one series per set of label values."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 registry: Registry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self._series[()] = self._new_series()
        if registry is not None:
            registry.register(self)

    def _new_series(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str, **named: str) -> Any:
        """The series for these label values (by position or by name), made on first use."""
        if not self.labelnames:
            raise ValueError(f"metric {self.name} has no labels")
        if named:
            if values or set(named) != set(self.labelnames):
                raise ValueError(f"metric {self.name}: give the labels {self.labelnames}")
            values = tuple(named[k] for k in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"metric {self.name}: {len(self.labelnames)} label values needed, got {len(values)}")
        key = tuple(str(v) for v in values)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self._new_series()
        return series

    def clear(self) -> None:
        """Remove every labelled series (an info gauge whose labels changed)."""
        if not self.labelnames:
            raise ValueError(f"metric {self.name} has no labels")
        with self._lock:
            self._series.clear()

    def _unlabelled(self) -> Any:
        if self.labelnames:
            raise ValueError(f"metric {self.name} has labels {self.labelnames}: use .labels(...)")
        return self._series[()]

    def _items(self) -> list[tuple[dict[str, str], Any]]:
        with self._lock:
            items = list(self._series.items())
        return [(dict(zip(self.labelnames, key, strict=True)), series) for key, series in items]

    def _created(self, items: list[tuple[dict[str, str], Any]]) -> Rendered:
        return (f"{self.name}_created", "gauge", self.documentation,
                [(f"{self.name}_created", labels, s.created) for labels, s in items])


class Counter(_Metric):
    """A counter, exposed as ``NAME_total`` (and ``NAME_created``)."""

    kind = "counter"

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to the unlabelled counter."""
        self._unlabelled().inc(amount)

    def get(self) -> float:
        """The unlabelled counter's value."""
        return float(self._unlabelled().get())

    def exposed_names(self) -> Names:
        """``NAME_total`` and ``NAME_created``."""
        return {f"{self.name}_total", f"{self.name}_created"}

    def collect(self) -> Iterable[Rendered]:
        """The counter family, then its ``_created`` gauge family."""
        items = self._items()
        yield (f"{self.name}_total", "counter", self.documentation,
               [(f"{self.name}_total", labels, s.get()) for labels, s in items])
        if items:  # no series yet: no _created family either
            yield self._created(items)


class Gauge(_Metric):
    """A gauge: a value that goes up and down (set, inc, dec, or read from a function)."""

    kind = "gauge"

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def set(self, value: float) -> None:
        """Set the unlabelled gauge."""
        self._unlabelled().set(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add to the unlabelled gauge."""
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract from the unlabelled gauge."""
        self._unlabelled().dec(amount)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the unlabelled gauge from ``function()`` whenever it is rendered."""
        self._unlabelled().set_function(function)

    def get(self) -> float:
        """The unlabelled gauge's value."""
        return float(self._unlabelled().get())

    def exposed_names(self) -> Names:
        """``NAME``."""
        return {self.name}

    def collect(self) -> Iterable[Rendered]:
        """The gauge family."""
        yield self.name, "gauge", self.documentation, [(self.name, labels, s.get()) for labels, s in self._items()]


class Histogram(_Metric):
    """A histogram: ``NAME_bucket{le=...}`` (cumulative, up to ``+Inf``), ``NAME_count``, ``NAME_sum``."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: Registry | None = None) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        self.upper_bounds = tuple(bounds)
        self._bounds_text = [format_value(b) for b in bounds]
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self.upper_bounds)

    def observe(self, value: float) -> None:
        """Count ``value`` in the unlabelled histogram."""
        self._unlabelled().observe(value)

    def exposed_names(self) -> Names:
        """``NAME_bucket``, ``NAME_count``, ``NAME_sum``, ``NAME_created``."""
        return {f"{self.name}{s}" for s in ("_bucket", "_count", "_sum", "_created")}

    def collect(self) -> Iterable[Rendered]:
        """The histogram family, then its ``_created`` gauge family."""
        items = self._items()
        samples: list[Sample] = []
        for labels, series in items:
            cumulative, total = series.snapshot()
            samples.extend((f"{self.name}_bucket", {**labels, "le": le}, float(n))
                           for le, n in zip(self._bounds_text, cumulative, strict=True))
            samples.append((f"{self.name}_count", labels, float(cumulative[-1])))
            samples.append((f"{self.name}_sum", labels, total))
        yield self.name, "histogram", self.documentation, samples
        if items:  # no series yet: no _created family either
            yield self._created(items)


class ProcessCollector(Family):
    """The process's own metrics, from ``/proc/self`` (none where it does not exist) and ``python_info``:
    the names and help texts of prometheus-client's process and platform collectors."""

    name = "process"

    def __init__(self, registry: Registry | None = None, proc: str = "/proc/self") -> None:
        self._proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot = self._boot_time()
        if registry is not None:
            registry.register(self)

    def exposed_names(self) -> Names:
        """The ``process_*`` gauges and counter, and ``python_info``."""
        return {"process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
                "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "python_info"}

    @staticmethod
    def _boot_time() -> float | None:
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except OSError:
            pass
        return None

    def collect(self) -> Iterable[Rendered]:
        """Memory, start time, CPU time, descriptors (if ``/proc`` answers), then ``python_info``."""
        try:
            families = self._process()
        except (OSError, ValueError, IndexError):  # no /proc here: only python_info
            families = []
        yield from families
        v = sys.version_info
        name = sys.implementation.name
        info = {"implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(name, name), "major": str(v[0]),
                "minor": str(v[1]), "patchlevel": str(v[2]), "version": f"{v[0]}.{v[1]}.{v[2]}"}
        yield "python_info", "gauge", "Python platform information", [("python_info", info, 1.0)]

    def _process(self) -> list[Rendered]:
        with open(f"{self._proc}/stat", "rb") as fh:
            fields = fh.read().split(b")")[-1].split()
        out = [("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", float(fields[20])),
               ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                float(fields[21]) * self._page)]
        if self._boot is not None:
            out.append(("process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.",
                        float(fields[19]) / self._ticks + self._boot))
        out.append(("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                    (float(fields[11]) + float(fields[12])) / self._ticks))
        out.append(("process_open_fds", "gauge", "Number of open file descriptors.",
                    float(len(os.listdir(f"{self._proc}/fd")))))
        with open(f"{self._proc}/limits") as fh:
            for line in fh:
                if line.startswith("Max open files"):
                    out.append(("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                                float(line.split()[3])))
        return [(name, kind, doc, [(name, {}, value)]) for name, kind, doc, value in out]
