"""Home Assistant MQTT discovery for the readings and predictions the MQTT sink publishes.

For every reading channel and every prediction output a retained config goes to
``<discovery_prefix>/<component>/<object_id>/config`` with a device block (one HA device per Spinal
device), a unique id, device class / unit / state class where they are known, the availability topic
(``<prefix>/<device_id>/status/availability``, retained ``online``/``offline``, also the last will) and
an origin block. Entities are declared in :class:`HomeAssistantOptions` and/or discovered from the
records themselves (``auto_entities``): each scalar in ``Record.data`` (and one level of nested dicts,
e.g. ``scores.walk``) becomes a sensor; booleans become binary sensors. Units and device classes are
guessed from the key's suffix (``temperature_c`` → temperature, °C; ``pressure_hpa`` → hPa …).

Configs are (re)announced on every connect and whenever Home Assistant's birth message (``online`` on
``<discovery_prefix>/status``) arrives. Retained messages on the topics we listen to are ignored: a
stale retained ``online`` (or any retained command) must not trigger anything.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from device import __version__
from device.errors import BadInput
from device.sinks.base import Record

if TYPE_CHECKING:
    from device.sinks.mqtt import MqttOptions

log = logging.getLogger(__name__)

Component = Literal["sensor", "binary_sensor"]
MAX_AUTO_ENTITIES = 256


@dataclass(frozen=True)
class HaEntity:
    """One Home Assistant entity: the value ``data[key]`` of the records of (kind, source).

    ``key`` may name one nested level with a dot (``scores.walk``)."""

    kind: Literal["reading", "prediction"]
    source: str
    key: str
    name: str | None = None
    component: Component = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    icon: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("reading", "prediction"):
            raise BadInput(f"homeassistant entity kind must be 'reading' or 'prediction', got {self.kind!r}")
        if self.component not in ("sensor", "binary_sensor"):
            raise BadInput(f"homeassistant entity component must be sensor or binary_sensor, got {self.component!r}")
        if not self.source or not self.key:
            raise BadInput("homeassistant entity needs a source and a key")


@dataclass(frozen=True)
class HomeAssistantOptions:
    """The ``[mqtt.homeassistant]`` section."""

    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    device_name: str | None = None  # default: the device id
    model: str | None = None  # e.g. the bundle's name
    auto_entities: bool = True
    entities: tuple[HaEntity, ...] = ()
    # Keys of Record.data that are bookkeeping, not something to show (top level or dotted).
    ignore_keys: tuple[str, ...] = ("slot", "window", "generation", "model", "seq", "mono_ns")

    def __post_init__(self) -> None:
        p = self.discovery_prefix
        if not p or any(c in p for c in "+#\x00") or p.startswith("/") or p.endswith("/"):
            raise BadInput(f"mqtt.homeassistant.discovery_prefix {p!r} is not a valid topic prefix")
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "ignore_keys", tuple(self.ignore_keys))


# Key suffix → (device_class, unit). Longest suffixes first so "_ms2" wins over "_ms" and "_s".
_SUFFIXES: tuple[tuple[str, str | None, str], ...] = tuple(sorted((
    ("_c", "temperature", "°C"), ("_degc", "temperature", "°C"), ("_f", "temperature", "°F"),
    ("_k", "temperature", "K"),
    ("_hpa", "atmospheric_pressure", "hPa"), ("_pa", "pressure", "Pa"), ("_kpa", "pressure", "kPa"),
    ("_rh", "humidity", "%"), ("_pct", None, "%"), ("_percent", None, "%"),
    ("_lux", "illuminance", "lx"), ("_lx", "illuminance", "lx"),
    ("_v", "voltage", "V"), ("_mv", "voltage", "mV"), ("_a", "current", "A"), ("_ma", "current", "mA"),
    ("_w", "power", "W"), ("_kw", "power", "kW"), ("_wh", "energy", "Wh"), ("_kwh", "energy", "kWh"),
    ("_ppm", None, "ppm"), ("_ppb", None, "ppb"), ("_ohm", None, "Ω"), ("_hz", "frequency", "Hz"),
    ("_s", "duration", "s"), ("_ms", "duration", "ms"), ("_us", "duration", "µs"),
    ("_m", "distance", "m"), ("_mm", "distance", "mm"), ("_cm", "distance", "cm"),
    ("_db", "sound_pressure", "dB"), ("_dba", "sound_pressure", "dBA"),
    ("_g", None, "g"), ("_ms2", None, "m/s²"), ("_mps2", None, "m/s²"), ("_dps", None, "°/s"),
    ("_rads", None, "rad/s"), ("_ut", None, "µT"), ("_deg", None, "°"),
), key=lambda t: -len(t[0])))
_WORDS: dict[str, tuple[str | None, str | None]] = {
    "temperature": ("temperature", "°C"), "humidity": ("humidity", "%"), "pressure": ("atmospheric_pressure", "hPa"),
    "illuminance": ("illuminance", "lx"), "battery": ("battery", "%"), "co2": ("carbon_dioxide", "ppm"),
}


def guess_entity(kind: Literal["reading", "prediction"], source: str, key: str, value: Any) -> HaEntity | None:
    """An entity for ``data[key] == value``, or None when the value is not a scalar HA can show."""
    if isinstance(value, bool):
        return HaEntity(kind, source, key, component="binary_sensor")
    leaf = key.rsplit(".", 1)[-1].lower()
    if isinstance(value, int | float):
        device_class, unit = _WORDS.get(leaf, (None, None))
        for suffix, dc, u in _SUFFIXES:
            if leaf.endswith(suffix) and len(leaf) > len(suffix):
                device_class, unit = dc, u
                if suffix == "_pct" and "humid" in leaf:
                    device_class = "humidity"
                if suffix == "_ppm" and "co2" in leaf:
                    device_class = "carbon_dioxide"
                break
        return HaEntity(kind, source, key, device_class=device_class, unit=unit, state_class="measurement")
    if isinstance(value, str):
        return HaEntity(kind, source, key)  # a label: text state, no unit, no state class
    return None


def entities_from_record(record: Record, ignore: tuple[str, ...] = ()) -> list[HaEntity]:
    """What auto-discovery makes of one reading or prediction record."""
    if record.kind not in ("reading", "prediction"):
        return []
    out = []
    for key, value in record.data.items():
        if key in ignore:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                if f"{key}.{sub}" in ignore:
                    continue
                e = guess_entity(record.kind, record.source, f"{key}.{sub}", v)
                if e is not None:
                    out.append(e)
        else:
            e = guess_entity(record.kind, record.source, str(key), value)
            if e is not None:
                out.append(e)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_")


def _human(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    for suffix, _, _ in _SUFFIXES:
        if leaf.lower().endswith(suffix) and len(leaf) > len(suffix):
            leaf = leaf[: -len(suffix)]
            break
    return leaf.replace("_", " ").strip().capitalize()


class HomeAssistantDiscovery:
    """Builds and publishes the discovery configs. ``publish(topic, payload, retain)`` is the MQTT
    sink's direct (non-spooled) QoS 1 publish; it returns False while disconnected."""

    def __init__(self, mqtt: MqttOptions, publish: Callable[[str, bytes, bool], bool]) -> None:
        ha = mqtt.homeassistant
        if ha is None:
            raise BadInput("mqtt.homeassistant options are missing")
        self.mqtt = mqtt
        self.options = ha
        self._publish = publish
        self._lock = threading.Lock()
        self._entities: dict[tuple[str, str, str], HaEntity] = {}
        self._declared: set[tuple[str, str, str]] = set()
        self._auto_full_logged = False
        self.announcements = 0  # full (re)announcements
        self.configs_published = 0
        self.ignored_retained = 0
        self.birth_messages = 0
        for e in ha.entities:
            k = (e.kind, e.source, e.key)
            self._entities[k] = e
            self._declared.add(k)

    @property
    def status_topic(self) -> str:
        return f"{self.options.discovery_prefix}/status"

    @property
    def entities(self) -> list[HaEntity]:
        with self._lock:
            return list(self._entities.values())

    def unique_id(self, e: HaEntity) -> str:
        return _slug(f"spinal_{self.mqtt.device_id}_{e.kind}_{e.source}_{e.key}")

    def config_topic(self, e: HaEntity) -> str:
        return f"{self.options.discovery_prefix}/{e.component}/{self.unique_id(e)}/config"

    def device_block(self) -> dict[str, Any]:
        return {
            "identifiers": [f"spinal_{_slug(self.mqtt.device_id)}"],
            "name": self.options.device_name or self.mqtt.device_id,
            "manufacturer": "Spinal",
            "model": self.options.model or "Spinal edge device",
            "sw_version": __version__,
        }

    def config(self, e: HaEntity) -> dict[str, Any]:
        """The discovery payload for one entity."""
        path = "".join(f"[{json.dumps(part)}]" for part in e.key.split(".", 1))
        value = f"value_json.data{path}"
        cfg: dict[str, Any] = {
            "name": e.name or f"{e.source} {_human(e.key)}",
            "unique_id": self.unique_id(e),
            "state_topic": self.mqtt.topic(e.kind, e.source),
            "availability_topic": self.mqtt.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": self.device_block(),
            "origin": {"name": "spinal", "sw_version": __version__},
        }
        if e.component == "binary_sensor":
            cfg["value_template"] = f"{{{{ 'ON' if {value} else 'OFF' }}}}"
            cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
        else:
            cfg["value_template"] = f"{{{{ {value} }}}}"
        for k, v in (("device_class", e.device_class), ("unit_of_measurement", e.unit),
                     ("state_class", e.state_class), ("icon", e.icon)):
            if v is not None:
                cfg[k] = v
        return cfg

    def _send(self, entities: list[HaEntity]) -> int:
        sent = 0
        for e in entities:
            payload = json.dumps(self.config(e), separators=(",", ":"), ensure_ascii=False).encode()
            if not self._publish(self.config_topic(e), payload, True):
                break
            sent += 1
        self.configs_published += sent
        return sent

    def announce(self) -> int:
        """Publish every entity's config (on connect and on Home Assistant's birth message)."""
        self.announcements += 1
        return self._send(self.entities)

    def observe(self, record: Record) -> None:
        """Auto-discovery: announce entities for keys not seen before."""
        if not self.options.auto_entities or record.kind not in ("reading", "prediction"):
            return
        new = []
        with self._lock:
            for e in entities_from_record(record, self.options.ignore_keys):
                k = (e.kind, e.source, e.key)
                if k in self._entities:
                    continue
                if len(self._entities) >= MAX_AUTO_ENTITIES:
                    if not self._auto_full_logged:
                        self._auto_full_logged = True
                        log.warning("Home Assistant discovery: more than %d entities; not announcing %s %s.%s "
                                    "and later ones (declare entities in mqtt.homeassistant)",
                                    MAX_AUTO_ENTITIES, e.kind, e.source, e.key)
                    continue
                self._entities[k] = e
                new.append(e)
        if new:
            self._send(new)

    def handle_message(self, topic: str, payload: bytes, retain: bool) -> None:
        """A message on a topic we subscribed to. Retained ones are stale by definition: ignored."""
        if retain:
            self.ignored_retained += 1
            log.debug("Home Assistant: ignored a retained message on %s", topic)
            return
        if topic == self.status_topic and payload.strip().lower() == b"online":
            self.birth_messages += 1
            log.info("Home Assistant came online; re-announcing %d entities", len(self._entities))
            self.announce()

    def stats(self) -> dict[str, int]:
        return {"entities": len(self._entities), "announcements": self.announcements,
                "configs_published": self.configs_published, "birth_messages": self.birth_messages,
                "ignored_retained": self.ignored_retained}
