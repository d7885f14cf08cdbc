"""Home Assistant MQTT discovery for the readings and predictions the MQTT sink publishes.

For every reading channel and every prediction output a retained config goes to
``<discovery_prefix>/<component>/<object_id>/config`` with a device block (one HA device per Spinal
device), a unique id, device class / unit / state class where they are known, the availability topic
(``<prefix>/<device_id>/status/availability``, retained ``online``/``offline``, also the last will) and
an origin block. Entities are declared in :class:`HomeAssistantOptions` and/or discovered from the
records themselves (``auto_entities``): each scalar in ``Record.data`` (and one level of nested dicts,
e.g. ``scores.walk``) becomes a sensor; booleans become binary sensors. Units and device classes are
guessed from the key's suffix (``temperature_c`` → temperature, °C; ``pressure_hpa`` → hPa …).

Values and units agree: the daemon's readings are SI (pressure in Pa), so a ``pressure`` channel is shown
in hPa with the value scaled in the template; ADC channels (``ain0``, ``ain0_ain1`` …) are volts. When a
record carries ``data["units"]`` (channel → unit, as the sensor drivers report them) those units decide.

Entities are stable across model updates: predictions belong to a *model role* (``model_role``, default
``model``), not to the bundle's name, so unique ids and discovery topics stay the same when a bundle with
another name is loaded; the configs are re-announced with the new state topic, and outputs the new model
no longer has are removed (an empty retained config). Configs of this device left retained on the broker
that are not announced again within ``stale_after_s`` of connecting (a sensor or model output that went
away while the daemon was down, entities of older versions named after the bundle) are removed as well.

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from device import __version__
from device.errors import BadInput
from device.schema import invalid
from device.sinks.base import VALUE_KINDS, Record, ValueKind

if TYPE_CHECKING:
    from device.sinks.mqtt import MqttOptions

log = logging.getLogger(__name__)

Component = Literal["sensor", "binary_sensor"]
COMPONENTS: tuple[Component, ...] = get_args(Component)
MAX_AUTO_ENTITIES = 256


@dataclass(frozen=True)
class HaEntity:
    """One Home Assistant entity: the value ``data[key]`` of the records of (kind, source).

    ``key`` may name one nested level with a dot (``scores.walk``)."""

    kind: ValueKind
    source: str
    key: str
    name: str | None = None
    component: Component = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    icon: str | None = None
    scale: float | None = None  # shown value = record value * scale (Pa → hPa: 0.01)

    def __post_init__(self) -> None:
        if self.kind not in VALUE_KINDS:
            raise invalid("kind", f"homeassistant entity kind must be 'reading' or 'prediction', got {self.kind!r}")
        if self.component not in COMPONENTS:
            raise invalid("component", "homeassistant entity component must be sensor or binary_sensor, "
                                       f"got {self.component!r}")
        if not self.source or not self.key:
            raise invalid("source" if not self.source else "key", "homeassistant entity needs a source and a key")


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
    ignore_keys: tuple[str, ...] = ("slot", "window", "generation", "model", "seq", "mono_ns", "units")
    # Predictions of whichever bundle runs are one set of entities named after this role.
    model_role: str = "model"
    # Our retained configs not announced again this long after connecting are removed.
    stale_after_s: float = 60.0

    def __post_init__(self) -> None:
        p = self.discovery_prefix
        if not p or any(c in p for c in "+#\x00") or p.startswith("/") or p.endswith("/"):
            raise invalid("discovery_prefix", f"mqtt.homeassistant.discovery_prefix {p!r} is not a valid topic prefix")
        if not isinstance(self.model_role, str) or not _slug(self.model_role):
            raise invalid("model_role", f"mqtt.homeassistant.model_role {self.model_role!r} must be a name "
                                        "(letters, digits, _ -)")
        if not 0 <= self.stale_after_s <= 86400:
            raise invalid("stale_after_s", "mqtt.homeassistant.stale_after_s must be 0..86400, "
                                           f"got {self.stale_after_s}")
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
# Bare channel names of Spinal's drivers → (device_class, unit shown, scale). Readings are SI: pressure in Pa.
_WORDS: dict[str, tuple[str | None, str | None, float | None]] = {
    "temperature": ("temperature", "°C", None), "humidity": ("humidity", "%", None),
    "pressure": ("atmospheric_pressure", "hPa", 0.01),
    "illuminance": ("illuminance", "lx", None), "battery": ("battery", "%", None),
    "co2": ("carbon_dioxide", "ppm", None),
    "accel_x": (None, "m/s²", None), "accel_y": (None, "m/s²", None), "accel_z": (None, "m/s²", None),
}
_ADC_CHANNEL = re.compile(r"ain[0-9](_ain[0-9])?")
# Units as the sensor drivers report them (data["units"]) → (device_class, unit shown, scale).
_UNITS: dict[str, tuple[str | None, str, float | None]] = {
    "Pa": ("atmospheric_pressure", "hPa", 0.01), "hPa": ("atmospheric_pressure", "hPa", None),
    "kPa": ("pressure", "kPa", None), "°C": ("temperature", "°C", None), "K": ("temperature", "K", None),
    "%RH": ("humidity", "%", None), "%": (None, "%", None), "V": ("voltage", "V", None),
    "mV": ("voltage", "mV", None), "A": ("current", "A", None), "lx": ("illuminance", "lx", None),
    "m/s²": (None, "m/s²", None), "°/s": (None, "°/s", None), "rad/s": (None, "rad/s", None),
    "µT": (None, "µT", None), "ppm": (None, "ppm", None), "Hz": ("frequency", "Hz", None),
}


def guess_entity(kind: ValueKind, source: str, key: str, value: Any,
                 unit: str | None = None) -> HaEntity | None:
    """An entity for ``data[key] == value``, or None when the value is not a scalar HA can show.
    ``unit`` is the unit the value is in, when the record says (``data["units"]``)."""
    if isinstance(value, bool):
        return HaEntity(kind, source, key, component="binary_sensor")
    leaf = key.rsplit(".", 1)[-1].lower()
    if isinstance(value, int | float):
        device_class, shown, scale = _WORDS.get(leaf, (None, None, None))
        if _ADC_CHANNEL.fullmatch(leaf):
            device_class, shown, scale = "voltage", "V", None
        for suffix, dc, u in _SUFFIXES:
            if leaf.endswith(suffix) and len(leaf) > len(suffix):
                device_class, shown, scale = dc, u, None
                if suffix == "_pct" and "humid" in leaf:
                    device_class = "humidity"
                if suffix == "_ppm" and "co2" in leaf:
                    device_class = "carbon_dioxide"
                break
        if unit is not None:
            device_class, shown, scale = _UNITS.get(unit, (None, unit, None))
            if shown == "%" and "humid" in leaf:
                device_class = "humidity"
        return HaEntity(kind, source, key, device_class=device_class, unit=shown, state_class="measurement",
                        scale=scale)
    if isinstance(value, str):
        return HaEntity(kind, source, key)  # a label: text state, no unit, no state class
    return None


def entities_from_record(record: Record, ignore: tuple[str, ...] = ()) -> list[HaEntity]:
    """What auto-discovery makes of one reading or prediction record."""
    if record.kind not in VALUE_KINDS:
        return []
    out = []
    units = record.data.get("units")
    units = units if isinstance(units, dict) else {}
    for key, value in record.data.items():
        if key in ignore:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                if f"{key}.{sub}" in ignore:
                    continue
                unit = units.get(sub) if key == "values" else None
                e = guess_entity(record.kind, record.source, f"{key}.{sub}", v,
                                 unit if isinstance(unit, str) else None)
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
    sink's direct (non-spooled) QoS 1 publish; it returns False while disconnected.

    Entities are keyed by (kind, owner, key): the owner of a reading is its sensor id, the owner of a
    prediction is ``model_role`` whatever the bundle is called; the model currently feeding a role
    gives only the state topic."""

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
        self._model_source: dict[str, str] = {}  # role -> the model (record source) feeding it now
        self._announced: set[str] = set()  # config topics with a config on the broker, from this process
        self._retained: set[str] = set()  # our configs the broker had retained when we (re)connected
        self._connected_at: float | None = None
        self._auto_full_logged = False
        self.announcements = 0  # full (re)announcements
        self.configs_published = 0
        self.configs_removed = 0
        self.ignored_retained = 0
        self.birth_messages = 0
        for e in ha.entities:
            if e.kind == "prediction" and e.source != ha.model_role:
                # Declared under the model's name: it belongs to the role; that model feeds it until another does.
                self._model_source.setdefault(ha.model_role, e.source)
                e = replace(e, source=ha.model_role)
            k = (e.kind, e.source, e.key)
            self._entities[k] = e
            self._declared.add(k)

    @property
    def status_topic(self) -> str:
        return f"{self.options.discovery_prefix}/status"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Home Assistant's status, and the discovery configs (to find our stale retained ones)."""
        p = self.options.discovery_prefix
        return (self.status_topic, f"{p}/sensor/+/config", f"{p}/binary_sensor/+/config")

    @property
    def entities(self) -> list[HaEntity]:
        with self._lock:
            return list(self._entities.values())

    def _owner(self, kind: str, source: str) -> str:
        return self.options.model_role if kind == "prediction" else source

    def _id_prefix(self) -> str:
        return _slug(f"spinal_{self.mqtt.device_id}") + "_"

    def unique_id(self, e: HaEntity) -> str:
        return _slug(f"spinal_{self.mqtt.device_id}_{e.kind}_{self._owner(e.kind, e.source)}_{e.key}")

    def config_topic(self, e: HaEntity) -> str:
        return f"{self.options.discovery_prefix}/{e.component}/{self.unique_id(e)}/config"

    def state_topic(self, e: HaEntity) -> str:
        if e.kind == "prediction":
            return self.mqtt.topic("prediction", self._model_source.get(e.source, e.source))
        return self.mqtt.topic(e.kind, e.source)

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
            "state_topic": self.state_topic(e),
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
        elif e.scale is not None and e.scale != 1:
            # The unit shown is not the unit sent (Pa sent, hPa shown): scale in the template.
            cfg["value_template"] = f"{{{{ ({value} * {e.scale!r}) | round(2) }}}}"
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
            topic = self.config_topic(e)
            payload = json.dumps(self.config(e), separators=(",", ":"), ensure_ascii=False).encode()
            if not self._publish(topic, payload, True):
                break
            sent += 1
            with self._lock:
                self._announced.add(topic)
        self.configs_published += sent
        return sent

    def _remove(self, topics: list[str]) -> int:
        """An empty retained config: Home Assistant removes the entity, the broker forgets the config."""
        removed = 0
        for topic in topics:
            if not self._publish(topic, b"", True):
                break  # disconnected: the cleanup after the next connect finds it again
            removed += 1
            with self._lock:
                self._announced.discard(topic)
                self._retained.discard(topic)
        self.configs_removed += removed
        return removed

    def announce(self) -> int:
        """Publish every entity's config (on connect and on Home Assistant's birth message)."""
        self.announcements += 1
        return self._send(self.entities)

    def connected(self, now: float) -> None:
        """The sink (re)connected: collect our retained configs anew; tick() removes the stale ones."""
        with self._lock:
            self._retained.clear()
            self._connected_at = now

    def tick(self, now: float) -> int:
        """Called often by the sink: ``stale_after_s`` after connecting, remove the retained configs of
        this device that were not announced again (channels and model outputs gone, old naming)."""
        with self._lock:
            if self._connected_at is None or now - self._connected_at < self.options.stale_after_s:
                return 0
            self._connected_at = None
            stale = sorted(self._retained - self._announced)
        if not stale:
            return 0
        log.info("Home Assistant discovery: removing %d config(s) of this device no longer announced", len(stale))
        return self._remove(stale)

    def observe(self, record: Record) -> None:
        """Auto-discovery: announce entities for keys not seen before; follow a model swap."""
        if record.kind not in VALUE_KINDS:
            return
        found = (entities_from_record(record, self.options.ignore_keys)
                 if self.options.auto_entities else [])
        owner = self._owner(record.kind, record.source)
        new: list[HaEntity] = []
        gone: list[str] = []
        with self._lock:
            if record.kind == "prediction" and self._model_source.get(owner) != record.source:
                # Another model feeds the role (or the first one): same entities, new state topic;
                # outputs the new model lacks are removed (declared entities stay).
                had_model = owner in self._model_source
                self._model_source[owner] = record.source
                keys = {e.key for e in found}
                for k, e in list(self._entities.items()):
                    if k[0] != "prediction" or k[1] != owner:
                        continue
                    if had_model and self.options.auto_entities and e.key not in keys and k not in self._declared:
                        del self._entities[k]
                        gone.append(self.config_topic(e))
                    else:
                        new.append(e)
                if had_model:
                    log.info("Home Assistant discovery: model %r now feeds the %r entities", record.source, owner)
            for e in found:
                if e.kind == "prediction":
                    e = replace(e, source=owner)
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
        if gone:
            self._remove(gone)
        if new:
            self._send(new)

    def handle_message(self, topic: str, payload: bytes, retain: bool) -> None:
        """A message on a topic we subscribed to. Retained ones are stale by definition: ignored (a
        retained discovery config of this device is only remembered, for tick()'s cleanup)."""
        if topic.endswith("/config"):
            object_id = topic.rsplit("/", 2)[-2]
            if retain and object_id.startswith(self._id_prefix()):
                with self._lock:
                    if payload:
                        self._retained.add(topic)
                    else:
                        self._retained.discard(topic)
            return
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
                "configs_published": self.configs_published, "configs_removed": self.configs_removed,
                "birth_messages": self.birth_messages, "ignored_retained": self.ignored_retained}
