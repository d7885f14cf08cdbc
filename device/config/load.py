"""Reading ``spinal.toml``: TOML text -> :class:`~device.config.models.Config` through :mod:`device.schema`,
every error one line naming the file, the line and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from device.config.models import (
    Config,
    ConfigError,
    DaemonConfig,
    HttpConfig,
    ModelConfig,
)
from device.config.sensors import ID_RE, read_sensors
from device.config.sinks import read_sinks
from device.config.toml_lines import ConfigFile
from device.errors import BadInput
from device.pipeline import PostprocessConfig
from device.schema import Reader, SchemaError, did_you_mean
from device.signing import load_public_key

TOP_KEYS = ("device_id", "state_dir", "model", "sensors", "binding", "postprocess", "sinks", "http", "daemon")


def load_config(path: str | Path, sim: bool = False) -> Config:
    """Read and validate a configuration file; raise :class:`ConfigError` naming the key.

    ``sim`` is accepted for symmetry with ``spinal run --sim``: it does not change validation
    (a sensor's ``sim`` table is always checked), only what the daemon builds.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file (see firmware/spinal.example.toml)") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, expected a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied (the daemon's user must be able to read it)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, source)


def parse_config(text: str, source: Path) -> Config:
    """Parse TOML text (from ``source``, used in messages and to resolve relative paths)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends in "(at line L, column C)".
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)$", msg)
        if m:
            raise ConfigError(f"{source}:{m.group(1)}: invalid TOML: {msg[: m.start()].strip()} "
                              f"(column {m.group(2)})") from None
        raise ConfigError(f"{source}: invalid TOML: {msg}") from None
    file = ConfigFile(source, text)
    try:
        return _read(file.reader, data, source)
    except SchemaError as exc:
        raise file.from_schema(exc) from None


def _device_id(reader: Reader, data: dict[str, Any]) -> str:
    if "device_id" not in data:
        raise SchemaError((), "missing required key 'device_id' (a short name for this device, e.g. \"pi-kitchen\")")
    device_id: str = reader.convert(data["device_id"], str, ("device_id",))
    if not ID_RE.match(device_id):
        raise SchemaError(("device_id",), f"{device_id!r} must start with a letter and hold up to 64 letters, "
                                          "digits, '_' or '-'")
    return device_id


def _model(reader: Reader, data: dict[str, Any]) -> ModelConfig:
    if "model" not in data:
        raise SchemaError((), "missing required table [model] (with at least bundle = \"/path/to/model.spinal\")")
    model = reader.build(ModelConfig, data["model"], ("model",))
    if model.require_signature and not model.trusted_keys:
        raise SchemaError(("model", "require_signature"), "needs [model] trusted_keys = "
                                                          "[\"/etc/spinal/keys/NAME.pub\"] (public keys made with: "
                                                          "spinal keygen)")
    for i, key_path in enumerate(model.trusted_keys):
        try:
            load_public_key(key_path)
        except BadInput as exc:
            raise SchemaError(("model", "trusted_keys", i), str(exc)) from None
    return model


def _binding(reader: Reader, data: dict[str, Any], ids: set[str]) -> dict[str, str]:
    binding: dict[str, str] = reader.convert(data.get("binding", {}), dict[str, str], ("binding",))
    for model_channel, ref in binding.items():
        sensor, dot, channel = ref.partition(".")
        if not dot or not channel:
            raise SchemaError(("binding", model_channel), f"{ref!r} is not SENSOR_ID.CHANNEL (e.g. \"imu.accel_x\")")
        if sensor not in ids:
            raise SchemaError(("binding", model_channel),
                              f"no sensor with id {sensor!r}{did_you_mean(sensor, ids)} "
                              f"(sensors: {', '.join(sorted(ids))})")
    return binding


def _read(reader: Reader, data: dict[str, Any], source: Path) -> Config:
    for key in data:
        if key not in TOP_KEYS:
            raise SchemaError((key,), f"unknown key{did_you_mean(key, TOP_KEYS)} (allowed: {', '.join(TOP_KEYS)})")
    device_id = _device_id(reader, data)
    state_dir = reader.convert(data["state_dir"], Path, ("state_dir",)) if "state_dir" in data else None
    model = _model(reader, data)
    sensors = read_sensors(reader, data.get("sensors"))
    binding = _binding(reader, data, {s.id for s in sensors})
    post = reader.build(PostprocessConfig, data.get("postprocess", {}), ("postprocess",))
    if post.threshold is not None and post.threshold < 0:
        raise SchemaError(("postprocess", "threshold"), f"must be >= 0, got {post.threshold}")
    sinks = read_sinks(reader, data.get("sinks"), device_id, state_dir)
    http = reader.build(HttpConfig, data.get("http", {}), ("http",))
    daemon = reader.build(DaemonConfig, data.get("daemon", {}), ("daemon",))
    return Config(source=source, device_id=device_id, model=model, sensors=sensors, binding=binding,
                  postprocess=post, sinks=sinks, http=http, daemon=daemon, state_dir=state_dir)
