"""The sink's telemetry: Prometheus metrics (:mod:`device.metrics`) for /metrics (recent percentiles:
device.percentiles)."""

from __future__ import annotations

from collections.abc import Callable

from device.metrics import Counter, Gauge, Histogram, Registry

_GAUGE_DOCS = {
    "spool_depth": "Messages in the MQTT spool (not yet acknowledged by the broker)",
    "spool_bytes": "Bytes in the MQTT spool",
    "spool_oldest_unsent_age_seconds": "Age of the oldest message not yet acknowledged",
    "spool_dropped_persistent": "Messages dropped by the spool over its whole life (drop-oldest)",
    "connected": "1 while connected to the broker",
    "inflight": "Messages handed to the broker and awaiting PUBACK",
}


class SinkMetrics:
    """Metrics on a caller's registry (the daemon serves /metrics).

    ``gauges`` maps each gauge's name to a function giving its value when /metrics is read:
    spool_depth, spool_bytes, spool_oldest_unsent_age_seconds, spool_dropped_persistent, connected, inflight."""

    def __init__(self, registry: Registry, namespace: str, gauges: dict[str, Callable[[], float]]) -> None:
        n = namespace
        self.gauges = {}
        for name, doc in _GAUGE_DOCS.items():
            g = Gauge(f"{n}_{name}", doc, registry=registry)
            g.set_function(gauges[name])
            self.gauges[name] = g
        self.dropped = Counter(f"{n}_spool_dropped", "Messages dropped because the spool was full",
                               registry=registry)
        self.reconnects = Counter(f"{n}_reconnects", "Successful reconnections to the broker", registry=registry)
        self.disconnects = Counter(f"{n}_disconnects", "Connections to the broker lost", registry=registry)
        self.published = Counter(f"{n}_published", "Messages handed to the broker", registry=registry)
        self.acked = Counter(f"{n}_acked", "Messages acknowledged by the broker (PUBACK)", registry=registry)
        self.rejected = Counter(f"{n}_rejected", "Messages the broker refused (MQTT 5 PUBACK failure code)",
                                registry=registry)
        buckets = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.latency = Histogram(f"{n}_publish_latency_seconds",
                                 "From handing a message to the broker to its PUBACK",
                                 buckets=buckets, registry=registry)
        self.delivery = Histogram(f"{n}_delivery_latency_seconds",
                                  "From write() (spool append) to PUBACK, outages included",
                                  buckets=(*buckets, 30, 60, 300, 1800, 3600), registry=registry)
