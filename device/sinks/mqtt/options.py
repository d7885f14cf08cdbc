"""``[mqtt]`` options, typed and validated; the topic layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from device.errors import BadInput
from device.schema import invalid
from device.sinks.homeassistant import HomeAssistantOptions
from device.sinks.mqtt.const import AVAILABILITY, KIND_DIRS


def valid_topic_part(value: str, key: str, *, allow_slash: bool) -> str:
    """``value`` if it can be one part of a topic; else BadInput naming ``key``."""
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
    # While the broker cannot be reached, a connection attempt (a refused or unanswered TCP connect) is the
    # cheap probe: at most probe_interval_s apart, so the sink is back within that of the broker's return.
    # A live broker that refuses the connection (credentials, quota) gets the backoff up to reconnect_max_s.
    probe_interval_s: float = 1.0
    reconnect_max_s: float = 30.0
    max_inflight: int = 32

    @property
    def probe_max_s(self) -> float:
        """The longest wait between attempts while the broker cannot be reached."""
        return min(max(self.probe_interval_s, self.reconnect_min_s), self.reconnect_max_s)
    close_timeout_s: float = 2.0  # how long close() waits for the spool to drain while connected
    homeassistant: HomeAssistantOptions | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise invalid("host", "mqtt.host must be a broker host name or address")
        for key in ("device_id", "topic_prefix"):
            try:
                valid_topic_part(getattr(self, key), f"mqtt.{key}", allow_slash=key == "topic_prefix")
            except BadInput as exc:
                raise invalid(key, str(exc)) from None
        if self.protocol not in ("5", "3.1.1"):
            raise invalid("protocol", f"mqtt.protocol must be '5' or '3.1.1', got {self.protocol!r}")
        port = self.port if self.port is not None else (8883 if self.tls else 1883)
        if not 0 < int(port) < 65536:
            raise invalid("port", f"mqtt.port must be 1..65535, got {self.port}")
        object.__setattr__(self, "port", int(port))
        if not 5 <= self.keepalive_s <= 65535:
            raise invalid("keepalive_s", f"mqtt.keepalive_s must be 5..65535, got {self.keepalive_s}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise invalid("reconnect_min_s", "mqtt.reconnect_min_s must be > 0 and <= mqtt.reconnect_max_s")
        if not self.probe_interval_s > 0:
            raise invalid("probe_interval_s", f"mqtt.probe_interval_s must be > 0, got {self.probe_interval_s}")
        if not 1 <= self.max_inflight <= 1000:
            raise invalid("max_inflight", f"mqtt.max_inflight must be 1..1000, got {self.max_inflight}")
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", Path(self.ca_file))
            if not self.tls:
                raise invalid("ca_file", "mqtt.ca_file is set but mqtt.tls is false; set mqtt.tls = true")
        if self.secrets_file is not None:
            object.__setattr__(self, "secrets_file", Path(self.secrets_file))
        if self.client_id is not None and not self.client_id:
            raise invalid("client_id", "mqtt.client_id must not be empty (leave it out for 'spinal-<device_id>')")

    @property
    def port_number(self) -> int:
        """``port`` after validation (always set: the default follows ``tls``)."""
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    @property
    def base_topic(self) -> str:
        """``<topic_prefix>/<device_id>``."""
        return f"{self.topic_prefix}/{self.device_id}"

    @property
    def availability_topic(self) -> str:
        """The retained online/offline topic (also the last will)."""
        return f"{self.base_topic}/status/{AVAILABILITY}"

    def topic(self, kind: str, source: str) -> str:
        """The topic of the records of ``kind`` from ``source``."""
        return f"{self.base_topic}/{KIND_DIRS[kind]}/{source}"
