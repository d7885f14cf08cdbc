"""``MqttSink``: the Sink protocol over the spool, the publisher and the connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from device.errors import BadInput, MissingDependency
from device.percentiles import Recent
from device.sinks.base import Record, encode_record
from device.sinks.homeassistant import HomeAssistantDiscovery
from device.sinks.mqtt.connection import Connection
from device.sinks.mqtt.const import AVAILABILITY, KIND_DIRS, log
from device.sinks.mqtt.credentials import MqttSecrets, load_secrets, make_tls_context
from device.sinks.mqtt.metrics import SinkMetrics
from device.sinks.mqtt.options import MqttOptions, valid_topic_part
from device.sinks.mqtt.publisher import Outstanding, Publisher
from device.sinks.spool import Spool, SpoolOptions


def _publish_properties(paho_props: Any, packet_types: Any) -> Any:
    """MQTT 5 publish properties packed once: paho packs properties on each publish() (~15 µs)."""

    class _Packed(paho_props):  # type: ignore[misc]
        """The same bytes for every message."""

        def pack(self) -> bytes:
            return packed

    props = _Packed(packet_types.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.ContentType = "application/json"
    packed: bytes = paho_props.pack(props)
    return props


class MqttSink:
    """A durable QoS 1 MQTT sink. Implements :class:`device.sinks.base.Sink`."""

    name = "mqtt"

    def __init__(self, options: MqttOptions, spool: SpoolOptions) -> None:
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
        except ImportError:
            raise MissingDependency("paho-mqtt is not installed; pip install 'spinal[mqtt]'") from None
        self.options = options
        secrets = load_secrets(options.secrets_file) if options.secrets_file else MqttSecrets()
        tls_context = make_tls_context(options, secrets) if options.tls else None

        self._lock = threading.Lock()  # one writer at a time
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._topics: dict[tuple[str, str], str] = {}
        self._metrics: SinkMetrics | None = None
        self.written = 0
        props = _publish_properties(Properties, PacketTypes) if options.protocol == "5" else None
        self.publisher = Publisher(options.max_inflight, paho, props, self._connected, self._wake, self._stop)
        self.connection = Connection(options, self.publisher, self._connected, self._wake, self._stop)
        self.homeassistant: HomeAssistantDiscovery | None = None
        if options.homeassistant is not None and options.homeassistant.enabled:
            self.homeassistant = HomeAssistantDiscovery(options, self.connection.publish_direct)
        self.connection.homeassistant = self.homeassistant

        self._client = self.connection.make_client(paho, secrets, tls_context)
        self._on_connect = self.connection.on_connect
        self.spool = Spool(spool)  # last: it holds the state directory's lock until close()
        self.connection.spool_depth = lambda: self.spool.depth
        self.publisher.bind(self._client, self.spool, tls=options.tls)
        tick = self.homeassistant.tick if self.homeassistant is not None else None
        self._sender = threading.Thread(target=self.publisher.run, args=(tick,), name="spinal-mqtt-sender",
                                        daemon=True)
        self._sender.start()
        self._connect(spool)

    def _connect(self, spool: SpoolOptions) -> None:
        o = self.options
        try:
            self._client.connect_async(o.host, o.port_number, o.keepalive_s,
                                       **({"clean_start": True} if o.protocol == "5" else {}))
            self._client.loop_start()
        except BaseException:
            self._stop.set()
            self._wake.set()
            self._sender.join()
            self.spool.close()
            raise
        log.info("MQTT sink: broker %s:%d (MQTT %s%s), topics under %s/, spool %s (%d queued)",
                 o.host, o.port_number, o.protocol, ", TLS" if o.tls else "",
                 o.base_topic, spool.path, self.spool.depth)

    # -- the Sink protocol --------------------------------------------------------------------

    def _topic_for(self, record: Record) -> str:
        key = (record.kind, record.source)
        topic = self._topics.get(key)
        if topic is None:
            if record.kind not in KIND_DIRS:
                raise BadInput(f"record kind {record.kind!r} is not one of {', '.join(KIND_DIRS)}")
            valid_topic_part(record.source, f"{record.kind} source", allow_slash=True)
            if record.kind == "status" and record.source == AVAILABILITY:
                raise BadInput("status source 'availability' is reserved for the online/offline topic")
            topic = self._topics[key] = self.options.topic(record.kind, record.source)
        if record.device_id != self.options.device_id:
            raise BadInput(f"record for device {record.device_id!r} given to the MQTT sink of device "
                           f"{self.options.device_id!r}")
        return topic

    def write(self, record: Record) -> None:
        """Append to the spool (on disk when this returns); the record goes to the broker meanwhile."""
        self.write_many((record,))

    def write_many(self, records: Iterable[Record]) -> None:
        """Like ``write`` for several records, in one transaction: one fsync for all of them.

        While the commit's fsync runs, the new messages are already handed to paho when nothing is waiting
        before them (so write → PUBACK costs about what a bare publish → PUBACK does); they are durable,
        and the sink counts them accepted, only when this returns. If the commit fails this raises and
        nothing of the batch is in the spool, though the broker may get some of it."""
        if self._closed:
            raise RuntimeError("MQTT sink is closed")
        t_write = time.monotonic()
        records = records if isinstance(records, list | tuple) else list(records)
        topic_for = self._topic_for
        batch = [(topic_for(r), encode_record(r), False) for r in records]
        if not batch:
            return
        spool = self.spool
        with self._lock:
            before = spool.dropped
            handed, rejected = self.publisher.append(batch, t_write)
            self.written += len(batch)
            dropped = spool.dropped - before
        if rejected:
            spool.delete(rejected)
        if dropped:
            self._count_dropped(dropped)
        if self.homeassistant is not None:
            for r in records:
                self.homeassistant.observe(r)
        if handed < len(batch) and not self._wake.is_set():
            self._wake.set()  # the sender takes what the writer could not hand over (PUBACKs wake it too)

    def _count_dropped(self, dropped: int) -> None:
        if self._metrics:
            self._metrics.dropped.inc(dropped)
        spool = self.spool
        if spool.dropped == dropped or spool.dropped % 1000 < dropped:
            log.warning("MQTT spool full (%d messages, %d bytes): dropped the oldest; %d dropped so far",
                        spool.depth, spool.bytes, spool.dropped)

    def flush(self) -> None:
        """Records are durable once written; this only nudges the sender."""
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the spool is empty (every message acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.spool.depth > 0:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Drain for up to ``close_timeout_s`` while connected, mark offline, disconnect. What is not
        acknowledged by then stays in the spool for the next start."""
        if self._closed:
            return
        self._closed = True
        if self._connected.is_set() and self.options.close_timeout_s > 0:
            self.wait_drained(self.options.close_timeout_s)
        self._stop.set()
        self._wake.set()
        self._sender.join()
        if self._connected.is_set():
            self.connection.publish_offline()
        self._client.disconnect()
        self._client.loop_stop()
        self.connection.paho_log.removeFilter(self.connection.quiet_when_closing)
        self._connected.clear()
        self.spool.close()

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- telemetry ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        return len(self.publisher.outstanding)

    @property
    def _outstanding(self) -> Outstanding:
        return self.publisher.outstanding

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged (this process)."""
        return self.publisher.acked

    @property
    def published(self) -> int:
        """Messages handed to paho (this process)."""
        return self.publisher.published

    @property
    def publish_latency(self) -> Recent:
        """Recent hand-over → PUBACK seconds."""
        return self.publisher.publish_latency

    @property
    def delivery_latency(self) -> Recent:
        """Recent write() → PUBACK seconds."""
        return self.publisher.delivery_latency

    def oldest_unsent_age_s(self) -> float | None:
        """Seconds since the oldest not-yet-acknowledged message was written, None when all are."""
        if self._closed and self._stop.is_set():
            return None
        created = self.spool.oldest_created()
        return None if created is None else max(0.0, time.time() - created)

    def stats(self) -> dict[str, Any]:
        """Everything /healthz and the logs need, as plain numbers."""
        p, c, spool = self.publisher, self.connection, self.spool
        return {
            "connected": self.connected,
            "spool_depth": spool.depth,
            "spool_bytes": spool.bytes,
            "oldest_unsent_age_s": self.oldest_unsent_age_s(),
            "dropped": spool.dropped,
            "dropped_total": spool.dropped_total,
            "written": self.written,
            "published": p.published,
            "acked": p.acked,
            "rejected": p.rejected,
            "retries": p.retries,
            "inflight": self.inflight,
            "window": p.window,
            "connects": c.connects,
            "reconnects": c.reconnects,
            "disconnects": c.disconnects,
            "publish_latency_p50_s": p.publish_latency.quantile(0.50),
            "publish_latency_p99_s": p.publish_latency.quantile(0.99),
            "delivery_latency_p50_s": p.delivery_latency.quantile(0.50),
            "delivery_latency_p99_s": p.delivery_latency.quantile(0.99),
            "spool_corrupt_recoveries": spool.corrupt_recoveries,
        }

    def register_metrics(self, registry: Any, namespace: str = "spinal_mqtt") -> None:
        """Create the sink's metrics on ``registry`` (:mod:`device.metrics`; once per sink)."""
        if self._metrics is not None:
            return
        spool = self.spool
        self._metrics = SinkMetrics(registry, namespace, {
            "spool_depth": lambda: spool.depth,
            "spool_bytes": lambda: spool.bytes,
            "spool_oldest_unsent_age_seconds": lambda: self.oldest_unsent_age_s() or 0.0,
            "spool_dropped_persistent": lambda: spool.dropped_total,
            "connected": lambda: 1.0 if self.connected else 0.0,
            "inflight": lambda: self.inflight,
        })
        self.publisher.metrics = self._metrics
