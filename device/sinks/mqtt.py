"""The MQTT sink: every record goes to disk first (the spool), then to the broker at QoS 1.

Topics (``prefix`` and ``device_id`` from :class:`MqttOptions`)::

    <prefix>/<device_id>/readings/<sensor id>       JSON of Record.to_dict(): seq, time, data …
    <prefix>/<device_id>/predictions/<model name>   idem
    <prefix>/<device_id>/status/<source>            idem
    <prefix>/<device_id>/status/availability        retained "online" / "offline" (also the last will)

Delivery: ``write``/``write_many`` append the JSON payloads to the :class:`~device.sinks.spool.Spool`
in one transaction and return once it is committed (the records are then accepted). When nothing older
is waiting, the writing thread hands the new messages to paho just before the insert, so the round trip
to the broker overlaps the fsync; otherwise a sender thread hands spooled messages to paho in spool
order. paho keeps ``max_inflight`` on the wire and queues the rest (at most ``_HANDOVER``), sending them
as PUBACKs come in; a message leaves the spool only after its PUBACK (deleted in batches).
While the broker is unreachable messages stay in the spool; paho resends the ones it already had
(in order) when the connection comes back, then the sender carries on from the spool. After a restart
the spool replays everything still in it, in order. The guarantee is at-least-once: a message whose
PUBACK was lost is sent again, so consumers count by ``seq`` (per kind) and drop repeats.

Credentials live in a separate TOML file (``secrets_file``) that must not be readable by others::

    username = "pi-kitchen"
    password = "…"
    client_cert = "/etc/spinal/mqtt-client.crt"   # optional, with client_key
    client_key = "/etc/spinal/mqtt-client.key"
    client_key_password = "…"                      # optional

Neither passwords nor payloads are ever logged or put in error messages.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import sys
import threading
import time
import tomllib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from device.errors import BadInput, MissingDependency
from device.sinks.base import Record, encode_record
from device.sinks.homeassistant import HomeAssistantDiscovery, HomeAssistantOptions
from device.sinks.spool import Spool, SpoolOptions

log = logging.getLogger(__name__)

_KIND_DIRS = {"reading": "readings", "prediction": "predictions", "status": "status"}
AVAILABILITY = "availability"
ONLINE, OFFLINE = "online", "offline"
# PUBACK reason codes that mean "not now" rather than "never": Quota exceeded, Server busy.
_TRANSIENT = frozenset({0x97, 0x89})
# Messages handed to paho at most (in flight + in paho's queue); see MqttSink._handover.
_HANDOVER = 1024
# The sender takes PUBACKs every _ACK_TICK_S while messages are out, at once when _ACK_WAKE are waiting,
# and deletes what was delivered once _DELETE_BATCH are done or the oldest has waited _DELETE_DELAY_S.
_ACK_TICK_S = 0.01
_ACK_WAKE = 128
_DELETE_BATCH = 512
_DELETE_DELAY_S = 0.02
_SECRET_KEYS = ("username", "password", "client_cert", "client_key", "client_key_password")


def _valid_topic_part(value: str, key: str, *, allow_slash: bool) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{key} must be a non-empty string")
    bad = [c for c in ("+", "#", "\x00") if c in value]
    if bad:
        raise BadInput(f"{key} {value!r} contains the MQTT wildcard or NUL character {bad[0]!r}; remove it")
    if not allow_slash and "/" in value:
        raise BadInput(f"{key} {value!r} must not contain '/'")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise BadInput(f"{key} {value!r} has an empty topic level; remove the extra '/'")
    return value


@dataclass(frozen=True)
class MqttSecrets:
    """What :func:`load_secrets` read. The passwords never appear in a repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = None
    client_key: Path | None = None
    client_key_password: str | None = field(default=None, repr=False)


def _check_private(path: Path, what: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as exc:
        raise BadInput(f"cannot read the {what} {path}: {exc.strerror}; check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"the {what} {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise BadInput(f"the {what} {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                       f"run: chmod 600 {path}")
    return st


def _unknown_key_line(path: Path, n: int) -> str:
    """Where the first key that is not allowed is ("line 3"), without saying what it is."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("["):
            return f"the table on line {number}"  # no tables are allowed at all
        key = text.split("=", 1)[0].strip().strip("\"'")
        if "=" in text and key not in _SECRET_KEYS:
            return f"the key on line {number}"
    return f"{n} key(s)"


def load_secrets(path: Path) -> MqttSecrets:
    """Read the credentials file; refuse it when other users can read or anyone else can write it."""
    path = Path(path)
    _check_private(path, "MQTT secrets file")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # The parser's message names a position, never the content; keep only that part.
        where = str(exc).rsplit("(", 1)[-1].rstrip(")") if "(" in str(exc) else "unknown position"
        raise BadInput(f"MQTT secrets file {path} is not valid TOML ({where}); fix its syntax") from None
    except OSError as exc:
        raise BadInput(f"cannot read the MQTT secrets file {path}: {exc.strerror}") from None
    if set(data) - set(_SECRET_KEYS):
        # Never echo the key: a password pasted on a line of its own is a key to the TOML parser.
        where = _unknown_key_line(path, len(set(data) - set(_SECRET_KEYS)))
        raise BadInput(f"MQTT secrets file {path}: {where} is not one of the allowed keys "
                       f"({', '.join(_SECRET_KEYS)}); fix or remove it")
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise BadInput(f"MQTT secrets file {path}: key {key!r} must be a non-empty string")
    if "password" in data and "username" not in data:
        raise BadInput(f"MQTT secrets file {path}: 'password' given without 'username'")
    if ("client_cert" in data) != ("client_key" in data):
        raise BadInput(f"MQTT secrets file {path}: 'client_cert' and 'client_key' go together")
    base = path.parent
    cert = (base / data["client_cert"]) if "client_cert" in data else None
    key = (base / data["client_key"]) if "client_key" in data else None
    if key is not None:
        _check_private(key, "MQTT client key")
    return MqttSecrets(
        username=data.get("username"), password=data.get("password"),
        client_cert=cert, client_key=key, client_key_password=data.get("client_key_password"),
    )


@dataclass(frozen=True)
class MqttOptions:
    """The ``[mqtt]`` section of the daemon's config, typed. Validation errors name the key."""

    host: str
    device_id: str
    port: int | None = None  # default 1883, or 8883 with TLS
    topic_prefix: str = "spinal"
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None  # default "spinal-<device_id>"
    keepalive_s: int = 30
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's CA store
    secrets_file: Path | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_inflight: int = 32
    close_timeout_s: float = 2.0  # how long close() waits for the spool to drain while connected
    homeassistant: HomeAssistantOptions | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise BadInput("mqtt.host must be a broker host name or address")
        _valid_topic_part(self.device_id, "mqtt.device_id", allow_slash=False)
        _valid_topic_part(self.topic_prefix, "mqtt.topic_prefix", allow_slash=True)
        if self.protocol not in ("5", "3.1.1"):
            raise BadInput(f"mqtt.protocol must be '5' or '3.1.1', got {self.protocol!r}")
        port = self.port if self.port is not None else (8883 if self.tls else 1883)
        if not 0 < int(port) < 65536:
            raise BadInput(f"mqtt.port must be 1..65535, got {self.port}")
        object.__setattr__(self, "port", int(port))
        if not 5 <= self.keepalive_s <= 65535:
            raise BadInput(f"mqtt.keepalive_s must be 5..65535, got {self.keepalive_s}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise BadInput("mqtt.reconnect_min_s must be > 0 and <= mqtt.reconnect_max_s")
        if not 1 <= self.max_inflight <= 1000:
            raise BadInput(f"mqtt.max_inflight must be 1..1000, got {self.max_inflight}")
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", Path(self.ca_file))
            if not self.tls:
                raise BadInput("mqtt.ca_file is set but mqtt.tls is false; set mqtt.tls = true")
        if self.secrets_file is not None:
            object.__setattr__(self, "secrets_file", Path(self.secrets_file))
        if self.client_id is not None and not self.client_id:
            raise BadInput("mqtt.client_id must not be empty (leave it out for 'spinal-<device_id>')")

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.device_id}"

    @property
    def availability_topic(self) -> str:
        return f"{self.base_topic}/status/{AVAILABILITY}"

    def topic(self, kind: str, source: str) -> str:
        return f"{self.base_topic}/{_KIND_DIRS[kind]}/{source}"


def make_tls_context(o: MqttOptions, s: MqttSecrets) -> ssl.SSLContext:
    """The TLS context for the broker: ``ca_file`` (or the system store) and the client certificate, if any."""
    try:
        ctx = ssl.create_default_context(cafile=str(o.ca_file) if o.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"cannot load mqtt.ca_file {o.ca_file}: {getattr(exc, 'strerror', None) or exc}; "
                       "give a PEM file with the broker's CA") from None
    if s.client_cert is not None and s.client_key is not None:
        try:
            ctx.load_cert_chain(str(s.client_cert), str(s.client_key), password=s.client_key_password)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise BadInput(f"cannot load the MQTT client certificate {s.client_cert} with key "
                           f"{s.client_key} ({reason}); check client_cert, client_key and "
                           f"client_key_password in {o.secrets_file}") from None
    return ctx


def check_options(o: MqttOptions) -> None:
    """What the sink reads at start, without connecting: the secrets file and the TLS files (for --check)."""
    secrets = load_secrets(o.secrets_file) if o.secrets_file else MqttSecrets()
    if o.tls:
        make_tls_context(o, secrets)


class _Percentiles:
    """The last N samples, for p50/p99 in stats() (the Prometheus histogram has the full picture)."""

    def __init__(self, n: int = 4096) -> None:
        self._d: deque[float] = deque(maxlen=n)

    def add(self, v: float) -> None:
        self._d.append(v)

    def quantile(self, q: float) -> float | None:
        if not self._d:
            return None
        s = sorted(self._d)
        return s[min(len(s) - 1, int(q * len(s)))]


class _Metrics:
    """prometheus-client objects on a caller's registry (the daemon serves /metrics)."""

    def __init__(self, sink: MqttSink, registry: Any, namespace: str) -> None:
        try:
            from prometheus_client import Counter, Gauge, Histogram
        except ImportError:
            raise MissingDependency("prometheus-client is not installed; pip install 'spinal[device]'") from None
        n = namespace
        gauges = {
            "spool_depth": ("Messages in the MQTT spool (not yet acknowledged by the broker)",
                            lambda: sink.spool.depth),
            "spool_bytes": ("Bytes in the MQTT spool", lambda: sink.spool.bytes),
            "spool_oldest_unsent_age_seconds": ("Age of the oldest message not yet acknowledged",
                                                lambda: sink.oldest_unsent_age_s() or 0.0),
            "spool_dropped_persistent": ("Messages dropped by the spool over its whole life (drop-oldest)",
                                         lambda: sink.spool.dropped_total),
            "connected": ("1 while connected to the broker", lambda: 1.0 if sink.connected else 0.0),
            "inflight": ("Messages handed to the broker and awaiting PUBACK", lambda: sink.inflight),
        }
        self.gauges = {}
        for name, (doc, fn) in gauges.items():
            g = Gauge(f"{n}_{name}", doc, registry=registry)
            g.set_function(fn)
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
        self._paho = paho
        self._secrets = load_secrets(options.secrets_file) if options.secrets_file else MqttSecrets()
        self._tls_context = make_tls_context(options, self._secrets) if options.tls else None

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        # PUBACKs as paho reports them (its network thread appends, the sender pops: no lock needed).
        self._acks: deque[tuple[int, Any, float]] = deque()
        # What paho holds for us, guarded by _send_lock together with _cursor, _resync and _retry_*:
        # mid -> (spool id, monotonic time handed over, monotonic time written, topic).
        self._send_lock = threading.Lock()
        self._outstanding: dict[int, tuple[int, float, float, str]] = {}
        self._cursor = 0  # highest spool id handed to paho in this process
        self._window = options.max_inflight  # paho's in-flight limit, lowered to the broker's Receive Maximum
        # paho keeps what is beyond the window in its own queue and sends it from its network thread as
        # PUBACKs come in (as plain paho does); this bounds what it holds (memory, resends after a break).
        self._handover = max(options.max_inflight, _HANDOVER)
        self._topics: dict[tuple[str, str], str] = {}
        self._done: list[int] = []  # acknowledged, still in the spool until _delete_done()
        self._done_since = 0.0
        self._sender_idle = False
        self._resync = False  # after a reconnect: let paho resend its unacknowledged ones first
        self._retry_from: int | None = None  # lowest spool id the broker asked us to send again
        self._retry_at = 0.0
        self._metrics: _Metrics | None = None
        self._t_write = 0.0  # the batch being written: its start, first id handed over, ids paho refused
        self._batch_first = 0
        self._batch_handed = 0
        self._batch_rejected: list[int] = []
        self._last_fail_log = 0.0
        self._rejected_logged: dict[str, float] = {}

        # Counters (this process); stats() has them all.
        self.connects = 0
        self.reconnects = 0
        self.disconnects = 0
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.retries = 0
        self.written = 0
        self.publish_latency = _Percentiles()
        self.delivery_latency = _Percentiles()

        self.homeassistant: HomeAssistantDiscovery | None = None
        if options.homeassistant is not None and options.homeassistant.enabled:
            self.homeassistant = HomeAssistantDiscovery(options, self._publish_direct)

        self._publish_props = None
        if options.protocol == "5":
            class _Packed(Properties):
                """The same bytes for every message: paho packs properties on each publish() (~15 µs)."""

                def pack(self) -> bytes:
                    return packed

            props = _Packed(PacketTypes.PUBLISH)
            props.PayloadFormatIndicator = 1
            props.ContentType = "application/json"
            packed: bytes = Properties.pack(props)
            self._publish_props = props

        self._client = self._make_client()
        self.spool = Spool(spool)  # last: it holds the state directory's lock until close()
        self._cursor = self.spool.head_cursor()
        self._sender = threading.Thread(target=self._run_sender, name="spinal-mqtt-sender", daemon=True)
        self._sender.start()
        try:
            self._client.connect_async(self.options.host, self.options.port, self.options.keepalive_s,
                                       **({"clean_start": True} if options.protocol == "5" else {}))
            self._client.loop_start()
        except BaseException:
            self._stop.set()
            self._wake.set()
            self._sender.join()
            self.spool.close()
            raise
        log.info("MQTT sink: broker %s:%d (MQTT %s%s), topics under %s/, spool %s (%d queued)",
                 options.host, options.port, options.protocol, ", TLS" if options.tls else "",
                 options.base_topic, spool.path, self.spool.depth)

    # -- set-up ------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        paho, o = self._paho, self.options
        proto = paho.MQTTv5 if o.protocol == "5" else paho.MQTTv311
        kwargs: dict[str, Any] = {"callback_api_version": paho.CallbackAPIVersion.VERSION2,
                                  "client_id": o.client_id or f"spinal-{o.device_id}", "protocol": proto}
        if proto == paho.MQTTv311:
            kwargs["clean_session"] = True
        client = paho.Client(**kwargs)
        self._paho_log = logging.getLogger(f"{__name__}.paho")
        self._paho_log.addFilter(self._quiet_when_closing)
        client.enable_logger(self._paho_log)
        client.max_inflight_messages_set(o.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(o.reconnect_min_s, o.reconnect_max_s)  # type: ignore[arg-type]
        client.will_set(o.availability_topic, OFFLINE, qos=1, retain=True)
        if self._secrets.username:
            client.username_pw_set(self._secrets.username, self._secrets.password)
        if self._tls_context is not None:
            client.tls_set_context(self._tls_context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _quiet_when_closing(self, record: logging.LogRecord) -> bool:
        """paho logs 'Client is not connected' at ERROR once its loop sees the socket we just closed."""
        return not (self._stop.is_set() and str(record.msg).startswith("Client is not connected"))

    # -- paho callbacks (paho's network thread: keep them short, never block) -----------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._log_fail(f"broker {self.options.host}:{self.options.port} refused the connection: {reason}")
            return
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            if self._metrics:
                self._metrics.reconnects.inc()
            log.info("MQTT reconnected to %s:%d; %d message(s) in the spool", self.options.host,
                     self.options.port, self.spool.depth)
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        self._window = min(self.options.max_inflight, int(receive_max)) if receive_max else self.options.max_inflight
        # paho's own in-flight limit (max_inflight) cannot change on a live connection: when the broker
        # allows fewer, hand paho no more than that, so that paho never has more in flight than allowed.
        self._handover = max(self.options.max_inflight, _HANDOVER) if self._window == self.options.max_inflight \
            else self._window
        # paho resends the messages it holds (unacknowledged before the break) right after this
        # callback returns; new ones must not overtake them, so nothing new is handed over until
        # their PUBACKs are in. (_resync is set before _connected: a writer that sees the one sees the other.)
        self._resync = bool(self._outstanding)
        self._connected.set()
        self._wake.set()
        try:
            client.publish(self.options.availability_topic, ONLINE, qos=1, retain=True)
            if self.homeassistant is not None:
                self.homeassistant.connected(time.monotonic())
                for topic in self.homeassistant.subscriptions:
                    client.subscribe(topic, qos=1)
                self.homeassistant.announce()
        except Exception:  # an exception here would end up in paho's log only; keep the sink running
            log.exception("MQTT: announcing availability / Home Assistant discovery failed")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set():
            self._connected.clear()
            self.disconnects += 1
            if self._metrics:
                self._metrics.disconnects.inc()
            if not self._stop.is_set():
                log.warning("MQTT connection to %s:%d lost (%s); spooling until it is back",
                            self.options.host, self.options.port, reason)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError`
        detail = f": {exc}" if exc is not None else ""
        self._log_fail(f"cannot connect to broker {self.options.host}:{self.options.port}{detail}")

    def _log_fail(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_fail_log >= 60.0 or self._last_fail_log == 0.0:
            self._last_fail_log = now
            log.warning("MQTT %s; retrying (messages are kept in the spool)", message)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # paho holds its message lock here, and a writer holding _send_lock may be waiting for it inside
        # publish(): take no lock of ours (deque.append is atomic; Event.set uses its own private lock).
        self._acks.append((mid, reason, time.monotonic()))
        if (self._sender_idle or len(self._acks) >= _ACK_WAKE) and not self._wake.is_set():
            self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self.homeassistant is not None:
            try:
                self.homeassistant.handle_message(message.topic, message.payload, bool(message.retain))
            except Exception:
                log.exception("MQTT: handling a message on %s failed", message.topic)

    def _publish_direct(self, topic: str, payload: bytes | str, retain: bool) -> bool:
        """Publish outside the spool (availability, discovery): only while connected, QoS 1."""
        if not self._connected.is_set():
            return False
        self._client.publish(topic, payload, qos=1, retain=retain)
        return True

    # -- the sender thread --------------------------------------------------------------------

    def _run_sender(self) -> None:
        while not self._stop.is_set():
            # PUBACKs are taken in batches: every _ACK_TICK_S while messages are out (or when many wait),
            # and delivered messages leave the spool in one delete per _DELETE_DELAY_S (or _DELETE_BATCH).
            busy = bool(self._outstanding or self._done)
            self._sender_idle = not busy  # then the next PUBACK wakes it (it would wait 0.25 s)
            self._wake.wait(_ACK_TICK_S if busy else 0.25)
            self._sender_idle = False
            self._wake.clear()
            try:
                self._drain_acks()
                self._delete_done()
                if self._connected.is_set():
                    self._hand_over()
                    if self.homeassistant is not None:
                        self.homeassistant.tick(time.monotonic())
            except Exception:  # never let the sender die: the spool keeps everything meanwhile
                log.exception("MQTT sender: unexpected error; retrying in 1 s")
                self._stop.wait(1.0)
        self._drain_acks()
        self._delete_done(force=True)

    def _delete_done(self, force: bool = False) -> None:
        """Remove acknowledged messages from the spool, many per transaction. Until then they are only
        counted in the depth: a crash meanwhile sends them again (at-least-once), nothing is lost."""
        done = self._done
        if not done:
            return
        if force or len(done) >= _DELETE_BATCH or time.monotonic() - self._done_since >= _DELETE_DELAY_S:
            self._done = []
            self.spool.delete(done)

    def _hand_over(self) -> None:
        """Hand spooled messages to paho in spool order (after a restart, a break or a backlog; the
        writer hands over new messages itself while nothing is waiting before them). The file is read
        without _send_lock held: a writer in its commit holds the spool's lock, and must not find
        _send_lock taken for that long (it would leave its batch to this thread)."""
        with self._send_lock:
            if self._resync:
                if self._outstanding:
                    return
                self._resync = False
            if self._retry_from is not None:
                if self._outstanding or time.monotonic() < self._retry_at:
                    return
                self._cursor = min(self._cursor, self._retry_from - 1)
                self._retry_from = None
            room = min(self._handover - len(self._outstanding), 256)
            cursor = self._cursor
        if room <= 0:
            return
        rows = self.spool.fetch_rows(cursor, room)
        if not rows:
            return
        # Rows from the file carry their wall-clock time of writing; the latency stats want monotonic.
        offset = time.monotonic() - time.time()
        with self._send_lock:
            if self._resync or self._retry_from is not None or not self._connected.is_set():
                return
            if self._cursor < cursor:  # cannot happen (only this thread moves it back); read again next time
                return
            if self._cursor > cursor:  # the writer handed some over meanwhile: they are the oldest ones
                rows = [r for r in rows if r[0] > self._cursor]
            rejected = self._publish_rows(rows, None, offset) if rows else []
        if rejected:
            self.spool.delete(rejected)
        if len(rows) == room:
            self._wake.set()

    def _publish_rows(self, rows: list[tuple[int, str, bytes, int, float, int]], t_written: float | None,
                      offset: float = 0.0) -> list[int]:
        """publish() each row at QoS 1 (``_send_lock`` held); returns the ids paho refused outright."""
        publish = self._client.publish
        props = self._publish_props
        outstanding = self._outstanding
        ok = (self._paho.MQTT_ERR_SUCCESS, self._paho.MQTT_ERR_NO_CONN)
        rejected: list[int] = []
        t_handed = time.monotonic()
        for row in rows:
            spool_id, topic, payload, retain = row[0], row[1], row[2], row[3]
            try:
                info = publish(topic, payload, 1, bool(retain), props)
                rc = info.rc
            except ValueError as exc:
                info, rc = None, str(exc)
            self._cursor = spool_id
            if info is None or rc not in ok:
                rejected.append(spool_id)
                self._log_rejected(topic, rc)
                continue
            outstanding[info.mid] = (spool_id, t_handed, row[4] + offset if t_written is None else t_written, topic)
        n = len(rows) - len(rejected)
        self.published += n
        if self._metrics:
            self._metrics.published.inc(n)
        if rejected:
            self.rejected += len(rejected)
            if self._metrics:
                self._metrics.rejected.inc(len(rejected))
        return rejected

    def _hand_over_new(self, rows: list[tuple[int, str, bytes, int]]) -> None:
        """Spool.append_many's before_write: the writer publishes its own new rows while they are inserted
        and committed, when nothing is waiting before them; else the sender takes them from the file.
        Never blocks on _send_lock (the sender may hold it while waiting for the spool's lock)."""
        if not self._connected.is_set() or self._resync or self._retry_from is not None:
            return
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            if self._resync or self._retry_from is not None or self._cursor != rows[0][0] - 1:
                return
            room = self._handover - len(self._outstanding)
            if room <= 0:
                return
            if room < len(rows):
                rows = rows[:room]
            self._batch_first = rows[0][0]
            self._batch_rejected = self._publish_rows(rows, self._t_write)
            self._batch_handed = len(rows)
        finally:
            self._send_lock.release()

    def _forget_batch(self, first_id: int) -> None:
        """A batch handed over before its commit failed: its ids will be used again, so its PUBACKs must
        not delete anything and the sender must not think it sent them. (paho still delivers what it
        has: the broker may get records whose write() raised; nothing is lost either way.)"""
        with self._send_lock:
            for mid in [m for m, e in self._outstanding.items() if e[0] >= first_id]:
                del self._outstanding[mid]
            if self._cursor >= first_id:
                self._cursor = first_id - 1

    def _log_rejected(self, topic: str, reason: object) -> None:
        now = time.monotonic()
        last = self._rejected_logged.get(topic)
        if last is None or now - last >= 60.0:
            self._rejected_logged[topic] = now
            log.warning("MQTT broker refused a message on %s (%s); dropped (%d refused so far; "
                        "check the broker's ACL for this device)", topic, reason, self.rejected)

    def _drain_acks(self) -> None:
        acks = self._acks
        if not acks:
            return
        done: list[int] = []
        publish_lat: list[float] = []
        delivery_lat: list[float] = []
        failed = 0
        with self._send_lock:
            outstanding = self._outstanding
            while acks:
                mid, reason, t_ack = acks.popleft()
                entry = outstanding.pop(mid, None)
                if entry is None:  # availability / discovery messages
                    continue
                code = getattr(reason, "value", 0)
                if code >= 0x80:
                    spool_id, _, _, topic = entry
                    if code in _TRANSIENT:
                        # The broker is busy or over quota: keep it and send it (and what follows) again soon.
                        self._retry_from = spool_id if self._retry_from is None else min(self._retry_from, spool_id)
                        self._retry_at = time.monotonic() + 1.0
                        self.retries += 1
                        if self.retries == 1 or self.retries % 1000 == 0:
                            log.warning("MQTT broker asked to retry a message on %s (%s); will resend it",
                                        topic, reason)
                        continue
                    done.append(spool_id)
                    failed += 1
                    self.rejected += 1
                    self._log_rejected(topic, reason)
                    continue
                done.append(entry[0])
                publish_lat.append(t_ack - entry[1])
                delivery_lat.append(t_ack - entry[2])
        self.acked += len(publish_lat)
        for v in publish_lat:
            self.publish_latency.add(v)
        for v in delivery_lat:
            self.delivery_latency.add(v)
        m = self._metrics
        if m:
            if publish_lat:
                m.acked.inc(len(publish_lat))
                for v in publish_lat:
                    m.latency.observe(v)
                for v in delivery_lat:
                    m.delivery.observe(v)
            if failed:
                m.rejected.inc(failed)
        if done:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.extend(done)

    # -- the Sink protocol --------------------------------------------------------------------

    def _topic_for(self, record: Record) -> str:
        key = (record.kind, record.source)
        topic = self._topics.get(key)
        if topic is None:
            if record.kind not in _KIND_DIRS:
                raise BadInput(f"record kind {record.kind!r} is not one of {', '.join(_KIND_DIRS)}")
            _valid_topic_part(record.source, f"{record.kind} source", allow_slash=True)
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
        with self._lock:
            before = self.spool.dropped
            self._t_write = t_write
            self._batch_first = 0
            self._batch_handed = 0
            self._batch_rejected = []
            try:
                self.spool.append_many(batch, self._hand_over_new)
            except BaseException:
                if self._batch_first:
                    self._forget_batch(self._batch_first)
                raise
            rejected = self._batch_rejected
            handed = self._batch_handed
            self.written += len(batch)
            dropped = self.spool.dropped - before
        if rejected:
            self.spool.delete(rejected)
        if dropped:
            if self._metrics:
                self._metrics.dropped.inc(dropped)
            if self.spool.dropped == dropped or self.spool.dropped % 1000 < dropped:
                log.warning("MQTT spool full (%d messages, %d bytes): dropped the oldest; %d dropped so far",
                            self.spool.depth, self.spool.bytes, self.spool.dropped)
        if self.homeassistant is not None:
            for r in records:
                self.homeassistant.observe(r)
        if handed < len(batch) and not self._wake.is_set():
            self._wake.set()  # the sender takes what the writer could not hand over (PUBACKs wake it too)

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
            try:
                info = self._client.publish(self.options.availability_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._paho_log.removeFilter(self._quiet_when_closing)
        self._connected.clear()
        self.spool.close()

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- telemetry ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        return len(self._outstanding)

    def oldest_unsent_age_s(self) -> float | None:
        """Seconds since the oldest not-yet-acknowledged message was written, None when all are."""
        if self._closed and self._stop.is_set():
            return None
        created = self.spool.oldest_created()
        return None if created is None else max(0.0, time.time() - created)

    def stats(self) -> dict[str, Any]:
        """Everything /healthz and the logs need, as plain numbers."""
        return {
            "connected": self.connected,
            "spool_depth": self.spool.depth,
            "spool_bytes": self.spool.bytes,
            "oldest_unsent_age_s": self.oldest_unsent_age_s(),
            "dropped": self.spool.dropped,
            "dropped_total": self.spool.dropped_total,
            "written": self.written,
            "published": self.published,
            "acked": self.acked,
            "rejected": self.rejected,
            "retries": self.retries,
            "inflight": self.inflight,
            "window": self._window,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "publish_latency_p50_s": self.publish_latency.quantile(0.50),
            "publish_latency_p99_s": self.publish_latency.quantile(0.99),
            "delivery_latency_p50_s": self.delivery_latency.quantile(0.50),
            "delivery_latency_p99_s": self.delivery_latency.quantile(0.99),
            "spool_corrupt_recoveries": self.spool.corrupt_recoveries,
        }

    def register_metrics(self, registry: Any, namespace: str = "spinal_mqtt") -> None:
        """Create the prometheus-client metrics on ``registry`` (once per sink)."""
        if self._metrics is None:
            self._metrics = _Metrics(self, registry, namespace)
