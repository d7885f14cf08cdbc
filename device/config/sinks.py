"""``[[sinks]]``: ``type`` picks the sink; its other keys are typed by that type's options dataclass (which
checks itself: ``__post_init__`` or ``check()``, see :mod:`device.schema`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.config.models import SinkConfig
from device.schema import KeyPath, Reader, SchemaError, did_you_mean, kind_of
from device.sinks.base import RECORD_KINDS


def _mqtt_options(reader: Reader, path: KeyPath, table: dict[str, Any], device_id: str,
                  state_dir: Path | None) -> Any:
    """``[[sinks]] type = "mqtt"``: the MQTT sink's own options plus its ``[sinks.spool]`` table."""
    from device.sinks.factory import MqttSinkOptions
    from device.sinks.mqtt import MqttOptions
    from device.sinks.spool import SpoolOptions

    mqtt = reader.build(MqttOptions, table, path, skip=("type", "name", "kinds", "spool"),
                        extra={"device_id": device_id})
    spool_table = table.get("spool", {})
    extra = {}
    if not isinstance(spool_table, dict) or "path" not in spool_table:
        if state_dir is None:
            raise SchemaError((*path, "spool"), "the MQTT spool needs a place on disk: set state_dir at the top "
                                                "or spool.path")
        extra = {"path": state_dir / "mqtt-spool.sqlite"}
    spool = reader.build(SpoolOptions, spool_table, (*path, "spool"), extra=extra)
    return MqttSinkOptions(mqtt=mqtt, spool=spool)


def _sink_type(path: KeyPath, table: Any, types: Any) -> str:
    if not isinstance(table, dict):
        raise SchemaError(path, f"expected a table, got {kind_of(table)}")
    kind = table.get("type")
    if kind is None:
        raise SchemaError(path, f"missing required key 'type' (one of {', '.join(types)})")
    if not isinstance(kind, str) or kind not in types:  # (a list is unhashable: check str first)
        hint = did_you_mean(kind, types) if isinstance(kind, str) else ""
        raise SchemaError((*path, "type"), f"unknown sink type {kind!r}{hint} (known: {', '.join(types)})")
    return kind


def _kinds(reader: Reader, path: KeyPath, table: dict[str, Any]) -> tuple[str, ...]:
    kinds: tuple[str, ...] = reader.convert(table.get("kinds", ["prediction", "status"]), tuple[str, ...],
                                            (*path, "kinds"))
    for j, k in enumerate(kinds):
        if k not in RECORD_KINDS:
            raise SchemaError((*path, "kinds", j), f"{k!r} is not a record kind{did_you_mean(k, RECORD_KINDS)} "
                                                   f"(kinds: {', '.join(RECORD_KINDS)})")
    return kinds


class _Unique:
    """Sink names, metric namespaces and MQTT spool files must not repeat."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.namespaces: dict[str, tuple[int, str]] = {}
        self.spools: dict[Path, int] = {}

    def name(self, path: KeyPath, index: int, kind: str, name: str) -> None:
        from device.sinks.factory import metrics_namespace

        if name in self.names:
            raise SchemaError((*path, "name"), f"{name!r} names two sinks; give each a unique name")
        self.names[name] = index
        namespace = metrics_namespace(kind, name)
        if namespace in self.namespaces:
            j, other = self.namespaces[namespace]
            raise SchemaError((*path, "name"), f"{name!r} and {other!r} (sinks[{j}]) give the same metric names "
                                               f"({namespace}_...); rename one")
        self.namespaces[namespace] = (index, name)

    def spool(self, path: KeyPath, index: int, spool_path: Path) -> None:
        spool_path = spool_path.absolute()
        if spool_path in self.spools:
            raise SchemaError((*path, "spool", "path"), f"{spool_path} is already the spool of "
                                                        f"sinks[{self.spools[spool_path]}]; give each MQTT sink its "
                                                        "own spool.path")
        self.spools[spool_path] = index


def read_sinks(reader: Reader, value: Any, device_id: str, state_dir: Path | None) -> tuple[SinkConfig, ...]:
    """``[[sinks]]`` (none: one JSON-lines sink), each sink's options typed by its type."""
    from device.sinks.factory import SINK_TYPES, sink_options_class

    if value is None:
        value = [{"type": "jsonl"}]
    if not isinstance(value, list):
        raise SchemaError(("sinks",), "expected one or more [[sinks]] tables")
    out: list[SinkConfig] = []
    unique = _Unique()
    for i, table in enumerate(value):
        path: KeyPath = ("sinks", i)
        kind = _sink_type(path, table, tuple(SINK_TYPES))
        name = reader.convert(table.get("name", f"{kind}{i}" if i else kind), str, (*path, "name"))
        kinds = _kinds(reader, path, table)
        unique.name(path, i, kind, name)
        if kind == "mqtt":
            options = _mqtt_options(reader, path, table, device_id, state_dir)
            unique.spool(path, i, options.spool.path)
        else:
            options = reader.build(sink_options_class(kind), table, path, skip=("type", "name", "kinds"))
        out.append(SinkConfig(type=kind, name=name, kinds=kinds, options=options))
    return tuple(out)
