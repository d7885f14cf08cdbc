"""Builds sinks from ``[[sinks]]`` config tables, keyed by ``type``.

Each type names an options dataclass (the config validates its keys against it) and a
constructor. ``mqtt`` is imported lazily so that a device without paho-mqtt can still use
the other sinks; asking for it then fails with the extra to install.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from device.errors import BadInput, MissingDependency
from device.sinks.base import Sink

if TYPE_CHECKING:  # mqtt.py needs paho-mqtt at import: imported for the types only
    from device.sinks.mqtt import MqttOptions
    from device.sinks.spool import SpoolOptions


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need from the daemon besides its own options."""

    device_id: str
    name: str
    state_dir: Path | None


@dataclass(frozen=True)
class SinkType:
    """Where a sink type lives: ``module`` holds ``options`` (a dataclass) and ``build(options, ctx)``."""

    module: str
    options: str
    build: str
    extra: str | None = None


SINK_TYPES: dict[str, SinkType] = {
    "jsonl": SinkType("device.sinks.jsonl", "JsonlOptions", "build_jsonl"),
    "mqtt": SinkType("device.sinks.factory", "MqttSinkOptions", "build_mqtt", extra="mqtt"),
}


@dataclass(frozen=True)
class MqttSinkOptions:
    """``[[sinks]] type = "mqtt"``: the MQTT options (device id from the config) and the spool's."""

    mqtt: MqttOptions
    spool: SpoolOptions


def build_mqtt(options: MqttSinkOptions, ctx: SinkContext) -> Sink:
    """The MQTT sink (paho imported only now)."""
    try:
        from device.sinks.mqtt import MqttSink
    except ImportError as exc:
        raise MissingDependency(f"sink type 'mqtt' is not available ({exc}); install it with: "
                                "pip install 'spinal[mqtt]'") from None
    sink = MqttSink(options.mqtt, options.spool)
    sink.name = ctx.name
    return sink


def metrics_namespace(kind: str, name: str) -> str:
    """The Prometheus name prefix of sink ``name`` of type ``kind`` (``spinal_mqtt``, ``spinal_mqtt_NAME``).

    Characters other than letters and digits become ``_``, so two sink names can share a prefix
    (``a-b`` and ``a_b``); the config refuses that (a registry cannot hold a metric twice)."""
    suffix = "" if name == kind else "_" + "".join(c if c.isalnum() else "_" for c in name)
    return f"spinal_{kind}{suffix}"


def _module(kind: str) -> Any:
    spec = SINK_TYPES[kind]
    try:
        return importlib.import_module(spec.module)
    except ImportError as exc:
        hint = f"pip install 'spinal[{spec.extra}]'" if spec.extra else "reinstall spinal"
        raise MissingDependency(f"sink type {kind!r} is not available ({exc}); install it with: {hint}") from None


def sink_options_class(kind: str) -> type:
    """The options dataclass of sink type ``kind``."""
    module = _module(kind)
    cls = getattr(module, SINK_TYPES[kind].options, None)
    if cls is None:
        raise MissingDependency(f"sink type {kind!r}: {SINK_TYPES[kind].module} has no "
                                f"{SINK_TYPES[kind].options}; this build of spinal lacks that sink")
    return cast(type, cls)


def create_sink(kind: str, options: Any, ctx: SinkContext) -> Sink:
    """Construct a sink of type ``kind``."""
    if kind not in SINK_TYPES:
        raise BadInput(f"unknown sink type {kind!r} (known: {', '.join(SINK_TYPES)})")
    module = _module(kind)
    spec = SINK_TYPES[kind]
    build = getattr(module, spec.build, None)
    if build is not None:
        return cast(Sink, build(options, ctx))
    raise MissingDependency(f"sink type {kind!r}: {spec.module} has no {spec.build}(); this build lacks that sink")
