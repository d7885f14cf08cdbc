"""The daemon's configuration: one TOML file (stdlib ``tomllib``) → typed, validated dataclasses.

Every error is one line that names the file, the line (where it can be found), the key and what
is expected, e.g. ``spinal.toml:14: sensors[0].adress: unknown key; did you mean 'address'?``.
Unknown keys are errors, so a typo never silently falls back to a default. Relative paths are
taken relative to the config file. ``firmware/spinal.example.toml`` documents every key.

Sections: ``device_id`` and ``state_dir`` at the top; ``[model]``, ``[[sensors]]``,
``[binding]``, ``[postprocess]``, ``[[sinks]]``, ``[http]``, ``[daemon]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from device.errors import BadInput
from device.pipeline import PostprocessConfig
from device.signing import load_public_key
from device.sinks.base import RECORD_KINDS

MIN_I2C_ADDRESS = 0x03
MAX_I2C_ADDRESS = 0x77
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class ConfigError(BadInput):
    """The configuration file is unreadable or invalid (exit code 2)."""


# --------------------------------------------------------------------------------------------
# The schema. Field metadata: "min"/"max" (inclusive), "gt" (exclusive), "help" (what is expected).


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: which bundle to run and how."""

    bundle: Path
    runtime: Literal["auto", "litert", "tflite-runtime", "onnxruntime"] = "auto"
    artifact: str = "auto"
    threads: int = field(default=1, metadata={"min": 1, "max": 64})
    delegate: str = "auto"
    fail_closed: bool = False
    trusted_keys: tuple[Path, ...] = ()
    require_signature: bool = False
    input: str | None = None
    latency_budget_ms: float = field(default=100.0, metadata={"gt": 0})
    canary: bool = True
    watch: bool = True
    watch_interval_s: float = field(default=2.0, metadata={"gt": 0})


@dataclass(frozen=True)
class SensorConfig:
    """``[[sensors]]``: one I2C device, sampled by its own thread at ``rate_hz``."""

    id: str
    driver: str
    bus: int = field(default=1, metadata={"min": 0, "max": 255})
    address: int | None = None
    rate_hz: float = field(default=1.0, metadata={"gt": 0, "max": 10000})
    options: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)
    readings: bool = False
    retry_initial_s: float = field(default=0.5, metadata={"gt": 0})
    retry_max_s: float = field(default=30.0, metadata={"gt": 0})
    # A failed sensor is probed (does it acknowledge its address?) this often; set up again once it does.
    probe_interval_s: float = field(default=0.2, metadata={"min": 0.01, "max": 60})
    # Readings whose raw values repeat exactly this many reads in a row are stale (a frozen chip); 0: off.
    stale_after: int = field(default=50, metadata={"min": 0, "max": 1_000_000})


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: /healthz and /metrics; loopback only unless told otherwise."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9108, metadata={"min": 0, "max": 65535})
    max_connections: int = field(default=16, metadata={"min": 1, "max": 1024})
    timeout_s: float = field(default=5.0, metadata={"gt": 0, "max": 300})


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: queues, watchdog and status cadence."""

    queue_windows: int = field(default=4, metadata={"min": 1, "max": 1024})
    queue_records: int = field(default=10000, metadata={"min": 1})
    status_interval_s: float = field(default=10.0, metadata={"gt": 0})
    # The daemon's loops beat every 0.2-0.25 s when idle: a shorter limit would call healthy threads stalled.
    stall_after_s: float = field(default=5.0, metadata={"min": 0.5})
    # While sensors are merely starting (no sample yet) within this long after the start, /healthz is not degraded.
    startup_grace_s: float = field(default=5.0, metadata={"min": 0, "max": 600})
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class SinkConfig:
    """``[[sinks]]``: ``type`` picks the sink; its other keys are that type's options."""

    type: str
    name: str
    kinds: tuple[str, ...]
    options: Any


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path
    device_id: str
    model: ModelConfig
    sensors: tuple[SensorConfig, ...]
    binding: dict[str, str]
    postprocess: PostprocessConfig
    sinks: tuple[SinkConfig, ...]
    http: HttpConfig
    daemon: DaemonConfig
    state_dir: Path | None = None

    def sensor(self, sensor_id: str) -> SensorConfig:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise KeyError(sensor_id)


# --------------------------------------------------------------------------------------------
# Locating keys in the TOML text (tomllib does not report lines)


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(#.*)?$")
_SIMPLE_KEY = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY_RE = re.compile(rf"^\s*({_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*)\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted)
    return tuple(a or b or c for a, b, c in parts)


class KeyLocator:
    """Maps key paths such as ``("sensors", 1, "address")`` to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        counts: dict[tuple[Any, ...], int] = {}
        current: tuple[Any, ...] = ()
        in_multiline = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_multiline = not in_multiline
                if not in_multiline:
                    continue
            if in_multiline:
                continue
            m = _HEADER_RE.match(line)
            if m and m.group(1) in ("[", "[["):
                keys = self._resolve(_split_key(m.group(2)), counts)
                if m.group(1) == "[[":
                    idx = counts.get(keys, 0)
                    counts[keys] = idx + 1
                    keys = (*keys, idx)
                current = keys
                self.lines.setdefault(current, lineno)
                continue
            m = _KEY_RE.match(line)
            if m:
                self.lines.setdefault((*current, *_split_key(m.group(1))), lineno)

    @staticmethod
    def _resolve(keys: tuple[str, ...], counts: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
        # [sensors.options] after [[sensors]] belongs to the last sensors entry.
        out: tuple[Any, ...] = ()
        for i, key in enumerate(keys):
            out = (*out, key)
            if i < len(keys) - 1 and out in counts:
                out = (*out, counts[out] - 1)
        return out

    def line(self, path: tuple[Any, ...]) -> int | None:
        """The line of ``path`` or, failing that, of its nearest enclosing table."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _path_text(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out or "<top>"


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Ctx:
    """Error reporting for one file: ``FILE:LINE: KEY: message``."""

    def __init__(self, source: Path, text: str) -> None:
        self.source = source
        self.locator = KeyLocator(text)

    def error(self, path: tuple[Any, ...], message: str) -> ConfigError:
        line = self.locator.line(path)
        where = f"{self.source}:{line}" if line else str(self.source)
        return ConfigError(f"{where}: {_path_text(path)}: {message}")

    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.source.absolute().parent / p)


# --------------------------------------------------------------------------------------------
# Generic dataclass building from a TOML table


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is Path:
        return "a path (string)"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"an array of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _convert(ctx: _Ctx, path: tuple[Any, ...], value: Any, tp: Any, meta: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(ctx, path, value, option, meta)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise ctx.error(path, f"expected {_describe(tp)}, got {_kind(value)} {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
            raise ctx.error(path, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {_kind(value)} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected an integer, got {_kind(value)} {value!r}")
        _check_range(ctx, path, value, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(path, f"expected a number, got {_kind(value)} {value!r}")
        if not math.isfinite(value):
            raise ctx.error(path, f"expected a finite number, got {value!r}")
        _check_range(ctx, path, value, meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_kind(value)} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ctx.error(path, f"expected a path (a non-empty string), got {_kind(value)} {value!r}")
        return ctx.resolve_path(value)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise ctx.error(path, f"expected {_describe(tp)}, got {_kind(value)} {value!r}")
        return tuple(_convert(ctx, (*path, i), v, item_tp, {}) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_kind(value)} {value!r}")
        val_tp = typing.get_args(tp)[1]
        if val_tp is Any:
            return dict(value)
        return {k: _convert(ctx, (*path, k), v, val_tp, {}) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(ctx, path, value, tp)
    if tp is Any:
        return value
    raise TypeError(f"config schema: unsupported type {tp!r} at {_path_text(path)}")


def _check_range(ctx: _Ctx, path: tuple[Any, ...], value: float, meta: Any) -> None:
    if "min" in meta and value < meta["min"]:
        raise ctx.error(path, f"must be >= {meta['min']}, got {value}")
    if "max" in meta and value > meta["max"]:
        raise ctx.error(path, f"must be <= {meta['max']}, got {value}")
    if "gt" in meta and value <= meta["gt"]:
        raise ctx.error(path, f"must be > {meta['gt']}, got {value}")


def build_dataclass(
    ctx: _Ctx, path: tuple[Any, ...], table: Any, cls: Any, skip: typing.Collection[str] = (),
    extra: dict[str, Any] | None = None,
) -> Any:
    """Build dataclass ``cls`` from a TOML table: types checked, unknown keys refused (did you mean)."""
    if not isinstance(table, dict):
        raise ctx.error(path, f"expected a table, got {_kind(table)} {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in (extra or {})}
    for key in table:
        if key not in fields and key not in skip:
            raise ctx.error((*path, key), f"unknown key{did_you_mean(key, [*fields, *skip])} "
                                          f"(allowed: {', '.join(sorted([*fields, *skip]))})")
    kwargs: dict[str, Any] = dict(extra or {})
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _convert(ctx, (*path, name), table[name], hints[name], f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(path, f"missing required key {name!r} ({_describe(hints[name])})")
    try:
        return cls(**kwargs)
    except (BadInput, ValueError) as exc:
        # A dataclass's own check: point at the key its message names, if it names one.
        named = [k for k in table if re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", str(exc))]
        raise ctx.error((*path, named[0]) if named else path, str(exc)) from None


# --------------------------------------------------------------------------------------------
# Loading


_TOP_KEYS = ("device_id", "state_dir", "model", "sensors", "binding", "postprocess", "sinks", "http", "daemon")


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
    ctx = _Ctx(source, text)
    for key in data:
        if key not in _TOP_KEYS:
            raise ctx.error((key,), f"unknown key{did_you_mean(key, _TOP_KEYS)} (allowed: {', '.join(_TOP_KEYS)})")

    device_id = _convert(ctx, ("device_id",), data["device_id"], str, {}) if "device_id" in data else None
    if device_id is None:
        raise ctx.error((), "missing required key 'device_id' (a short name for this device, e.g. \"pi-kitchen\")")
    if not _ID_RE.match(device_id):
        raise ctx.error(("device_id",), f"{device_id!r} must start with a letter and hold up to 64 letters, "
                                        "digits, '_' or '-'")
    state_dir = _convert(ctx, ("state_dir",), data["state_dir"], Path, {}) if "state_dir" in data else None

    if "model" not in data:
        raise ctx.error((), "missing required table [model] (with at least bundle = \"/path/to/model.spinal\")")
    model = build_dataclass(ctx, ("model",), data["model"], ModelConfig)
    if model.require_signature and not model.trusted_keys:
        raise ctx.error(("model", "require_signature"), "needs [model] trusted_keys = [\"/etc/spinal/keys/NAME.pub\"] "
                                                        "(public keys made with: spinal keygen)")
    for i, key_path in enumerate(model.trusted_keys):
        try:
            load_public_key(key_path)
        except BadInput as exc:
            raise ctx.error(("model", "trusted_keys", i), str(exc)) from None

    sensors = _sensors(ctx, data.get("sensors"))
    binding = _convert(ctx, ("binding",), data.get("binding", {}), dict[str, str], {})
    ids = {s.id for s in sensors}
    for model_channel, ref in binding.items():
        sensor, dot, channel = ref.partition(".")
        if not dot or not channel:
            raise ctx.error(("binding", model_channel), f"{ref!r} is not SENSOR_ID.CHANNEL (e.g. \"imu.accel_x\")")
        if sensor not in ids:
            raise ctx.error(("binding", model_channel),
                            f"no sensor with id {sensor!r}{did_you_mean(sensor, ids)} "
                            f"(sensors: {', '.join(sorted(ids))})")

    post = build_dataclass(ctx, ("postprocess",), data.get("postprocess", {}), PostprocessConfig)
    if post.threshold is not None and post.threshold < 0:
        raise ctx.error(("postprocess", "threshold"), f"must be >= 0, got {post.threshold}")
    sinks = _sinks(ctx, data.get("sinks"), device_id, state_dir)
    http = build_dataclass(ctx, ("http",), data.get("http", {}), HttpConfig)
    daemon = build_dataclass(ctx, ("daemon",), data.get("daemon", {}), DaemonConfig)
    return Config(source=source, device_id=device_id, model=model, sensors=sensors, binding=binding,
                  postprocess=post, sinks=sinks, http=http, daemon=daemon, state_dir=state_dir)


def known_drivers() -> tuple[str, ...] | None:
    """The sensor driver names this build knows (``None`` if the sensor package is unavailable)."""
    try:
        from device.sensors.registry import DRIVERS
    except ImportError:  # pragma: no cover - the sensors package ships with device
        return None
    return tuple(DRIVERS)


class NoBus:
    """An smbus2-shaped bus that refuses every transfer: lets a driver be constructed (its options
    validated, its channels known) without hardware."""

    label = "no bus (config check)"

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "no I/O during a config check")

    read_i2c_block_data = write_byte_data = i2c_rdwr = read_byte_data = write_i2c_block_data = _refuse
    read_byte = write_byte = write_quick = _refuse


def _check_driver_options(ctx: _Ctx, index: int, s: SensorConfig) -> None:
    try:
        from device.sensors.base import SensorError
        from device.sensors.registry import make_driver
    except ImportError:  # pragma: no cover
        return
    try:
        make_driver(s.driver, NoBus(), s.address, s.options)
    except SensorError as exc:
        m = re.search(r"option '([^']+)'", str(exc))
        key = m.group(1) if m and m.group(1) in s.options else None
        path = ("sensors", index, "options", key) if key else ("sensors", index, "options")
        raise ctx.error(path, str(exc)) from None


def _check_driver_address(ctx: _Ctx, index: int, s: SensorConfig) -> None:
    """An address the chip cannot have (an SHT3x at 0x40) is a config error, not a sensor retried forever."""
    from device.sensors.registry import driver_class

    allowed = driver_class(s.driver).addresses
    if s.address is not None and allowed and s.address not in allowed:
        raise ctx.error(("sensors", index, "address"),
                        f"0x{s.address:02x} is not an address a {s.driver} can have (it answers at "
                        f"{' or '.join(f'0x{a:02x}' for a in allowed)})")


def _check_sim(ctx: _Ctx, index: int, s: SensorConfig) -> None:
    """``[sensors.sim]`` typed as ``spinal run --sim`` reads it (:func:`device.sensors.sim.check_sim_table`), at
    load: a typo is an error naming file, line and key (``--check`` refuses it), not a sensor retried forever."""
    try:
        from device.sensors.sim import SimSpecError, check_sim_table
    except ImportError:  # pragma: no cover - the simulator ships with device
        return
    where = _path_text(("sensors", index, "sim"))
    try:
        check_sim_table(s.driver, s.sim, where=where)
    except SimSpecError as exc:
        key = exc.key.removeprefix(where).lstrip(".")
        line = ctx.locator.line(("sensors", index, "sim", *([key] if key else [])))
        raise ConfigError(f"{ctx.source}:{line}: {exc}" if line else f"{ctx.source}: {exc}") from None


def locate(config: Config, *path: Any) -> str:
    """``FILE:LINE: KEY`` for a key of a loaded config (``FILE: KEY`` if the file cannot be read again)."""
    try:
        line = KeyLocator(config.source.read_text(encoding="utf-8")).line(tuple(path))
    except (OSError, UnicodeDecodeError):
        line = None
    where = f"{config.source}:{line}" if line else str(config.source)
    return f"{where}: {_path_text(tuple(path))}"


def _sensors(ctx: _Ctx, value: Any) -> tuple[SensorConfig, ...]:
    if value is None:
        raise ctx.error((), "missing [[sensors]]: configure at least one sensor (id, driver, bus, address, rate_hz)")
    if not isinstance(value, list) or not value:
        raise ctx.error(("sensors",), "expected one or more [[sensors]] tables")
    drivers = known_drivers()
    out: list[SensorConfig] = []
    for i, table in enumerate(value):
        s = build_dataclass(ctx, ("sensors", i), table, SensorConfig)
        if not _ID_RE.match(s.id) or "." in s.id:
            raise ctx.error(("sensors", i, "id"), f"{s.id!r} must start with a letter and hold up to 64 letters, "
                                                  "digits, '_' or '-'")
        if any(o.id == s.id for o in out):
            raise ctx.error(("sensors", i, "id"), f"{s.id!r} is already the id of another sensor; ids must be unique")
        if drivers is not None and s.driver not in drivers:
            raise ctx.error(("sensors", i, "driver"), f"unknown driver {s.driver!r}{did_you_mean(s.driver, drivers)} "
                                                      f"(known: {', '.join(sorted(drivers))})")
        if s.address is not None and not MIN_I2C_ADDRESS <= s.address <= MAX_I2C_ADDRESS:
            raise ctx.error(("sensors", i, "address"),
                            f"0x{s.address:02x} ({s.address}) is not a 7-bit I2C device address; expected "
                            f"0x{MIN_I2C_ADDRESS:02x}..0x{MAX_I2C_ADDRESS:02x}, e.g. 0x68")
        if drivers is not None:
            _check_driver_address(ctx, i, s)
            _check_driver_options(ctx, i, s)
        _check_sim(ctx, i, s)
        if s.retry_max_s < s.retry_initial_s:
            raise ctx.error(("sensors", i, "retry_max_s"),
                            f"must be >= retry_initial_s ({s.retry_initial_s}), got {s.retry_max_s}")
        out.append(s)
    return tuple(out)


def _mqtt_options(ctx: _Ctx, path: tuple[Any, ...], table: dict[str, Any], device_id: str,
                  state_dir: Path | None) -> Any:
    """``[[sinks]] type = "mqtt"``: the MQTT sink's own options plus its ``[sinks.spool]`` table."""
    from device.sinks.factory import MqttSinkOptions
    from device.sinks.mqtt import MqttOptions
    from device.sinks.spool import SpoolOptions

    mqtt = build_dataclass(ctx, path, table, MqttOptions, skip=("type", "name", "kinds", "spool"),
                           extra={"device_id": device_id})
    spool_table = table.get("spool", {})
    extra = {}
    if not isinstance(spool_table, dict) or "path" not in spool_table:
        if state_dir is None:
            raise ctx.error((*path, "spool"), "the MQTT spool needs a place on disk: set state_dir at the top "
                                              "or spool.path")
        extra = {"path": state_dir / "mqtt-spool.sqlite"}
    spool = build_dataclass(ctx, (*path, "spool"), spool_table, SpoolOptions, extra=extra)
    return MqttSinkOptions(mqtt=mqtt, spool=spool)


def _sinks(ctx: _Ctx, value: Any, device_id: str, state_dir: Path | None) -> tuple[SinkConfig, ...]:
    from device.sinks.factory import SINK_TYPES, metrics_namespace, sink_options_class

    if value is None:
        value = [{"type": "jsonl"}]
    if not isinstance(value, list):
        raise ctx.error(("sinks",), "expected one or more [[sinks]] tables")
    out: list[SinkConfig] = []
    namespaces: dict[str, int] = {}
    spools: dict[Path, int] = {}
    for i, table in enumerate(value):
        path = ("sinks", i)
        if not isinstance(table, dict):
            raise ctx.error(path, f"expected a table, got {_kind(table)}")
        kind = table.get("type")
        if kind is None:
            raise ctx.error(path, f"missing required key 'type' (one of {', '.join(SINK_TYPES)})")
        if not isinstance(kind, str) or kind not in SINK_TYPES:  # (a list is unhashable: check str first)
            hint = did_you_mean(kind, SINK_TYPES) if isinstance(kind, str) else ""
            raise ctx.error((*path, "type"), f"unknown sink type {kind!r}{hint} (known: {', '.join(SINK_TYPES)})")
        name = _convert(ctx, (*path, "name"), table.get("name", f"{kind}{i}" if i else kind), str, {})
        kinds = _convert(ctx, (*path, "kinds"), table.get("kinds", ["prediction", "status"]), tuple[str, ...], {})
        for j, k in enumerate(kinds):
            if k not in RECORD_KINDS:
                raise ctx.error((*path, "kinds", j), f"{k!r} is not a record kind{did_you_mean(k, RECORD_KINDS)} "
                                                     f"(kinds: {', '.join(RECORD_KINDS)})")
        if any(s.name == name for s in out):
            raise ctx.error((*path, "name"), f"{name!r} names two sinks; give each a unique name")
        namespace = metrics_namespace(kind, name)
        if namespace in namespaces:
            other = out[namespaces[namespace]].name
            raise ctx.error((*path, "name"), f"{name!r} and {other!r} (sinks[{namespaces[namespace]}]) give the "
                                             f"same metric names ({namespace}_...); rename one")
        namespaces[namespace] = i
        if kind == "mqtt":
            options = _mqtt_options(ctx, path, table, device_id, state_dir)
            spool_path = options.spool.path.absolute()
            if spool_path in spools:
                raise ctx.error((*path, "spool", "path"), f"{spool_path} is already the spool of "
                                                          f"sinks[{spools[spool_path]}]; give each MQTT sink its "
                                                          "own spool.path")
            spools[spool_path] = i
        else:
            options = build_dataclass(ctx, path, table, sink_options_class(kind), skip=("type", "name", "kinds"))
        _post_check = getattr(options, "validate", None)
        if callable(_post_check):
            try:
                _post_check()
            except (ValueError, BadInput) as exc:
                raise ctx.error(path, str(exc)) from None
        out.append(SinkConfig(type=kind, name=name, kinds=kinds, options=options))
    return tuple(out)
