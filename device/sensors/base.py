"""What every sensor driver shares: the :class:`Reading`, the :class:`Sensor` base class, errors, options.

A driver is constructed as ``Driver(bus, address, options)``; ``bus`` is a
:class:`device.sensors.bus.I2CBus` (or anything smbus2-like, which is wrapped in one),
``options`` the driver's typed options dataclass. ``setup()`` identifies the chip, resets and
configures it; ``read()`` returns one sample as ``{channel: SI value}``.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union

from device.errors import BadInput, SpinalError


class SensorError(BadInput):
    """A sensor cannot be used as configured: wrong chip id, nothing at the address, a bad option."""


class BusError(SpinalError):
    """An I2C transaction failed for good (after the retries). ``errno`` is the OS error number."""

    exit_code = 1

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class DataError(BusError):
    """A chip answered, but its data is corrupt (a CRC mismatch that persisted over the retries)."""


@dataclass(frozen=True)
class Reading:
    """One sample of one sensor.

    ``sensor`` is the instance id from the configuration (e.g. ``"imu"``), ``timestamp_ns`` the
    ``time.monotonic_ns()`` taken right after the data bytes were read, ``values`` maps channel
    names to SI values and ``units`` channel names to unit strings.
    """

    sensor: str
    timestamp_ns: int
    values: dict[str, float]
    units: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "timestamp_ns": self.timestamp_ns,
                "values": dict(self.values), "units": dict(self.units)}


class Sensor:
    """Base class of the drivers. Subclasses set ``name``, ``Options``, ``default_address``, ``addresses``."""

    name: ClassVar[str] = "sensor"
    Options: ClassVar[type] = object
    default_address: ClassVar[int] = 0
    addresses: ClassVar[tuple[int, ...]] = ()

    channels: tuple[str, ...]
    units: dict[str, str]

    def __init__(self, bus: Any, address: int | None = None, options: Any = None) -> None:
        from device.sensors.bus import as_bus

        self.bus = as_bus(bus)
        self.address = self.default_address if address is None else int(address)
        if not 0x03 <= self.address <= 0x77:
            raise SensorError(f"{self.name}: I2C address {self.address:#04x} is outside 0x03..0x77")
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = parse_options(self.Options, options, self.name)
        elif not isinstance(options, self.Options):
            raise SensorError(f"{self.name}: options must be {self.Options.__name__}, not {type(options).__name__}")
        self.options = options
        self.channels = ()
        self.units = {}

    @property
    def where(self) -> str:
        """``"bme280 on bus 1 at 0x76"``: for error messages."""
        return f"{self.name} on {self.bus.label} at {self.address:#04x}"

    def setup(self) -> None:  # pragma: no cover - every driver overrides it
        raise NotImplementedError

    def read(self) -> dict[str, float]:  # pragma: no cover - every driver overrides it
        raise NotImplementedError

    def reading(self, sensor_id: str | None = None) -> Reading:
        """``read()`` wrapped in a :class:`Reading` stamped with ``time.monotonic_ns()`` after the read."""
        values = self.read()
        stamp = time.monotonic_ns()
        return Reading(sensor_id or self.name, stamp, values, {c: self.units[c] for c in values})

    def _missing(self, exc: BaseException) -> SensorError:
        return SensorError(f"no {self.name} answers on {self.bus.label} at {self.address:#04x} ({exc}); check the "
                           f"wiring and the address (`spinal sensors scan --bus {self.bus.number}` lists the devices)")


# --------------------------------------------------------------------------------------------
# Options: dicts from a config file or the command line -> typed dataclasses

T = TypeVar("T")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, key, where)
            except SensorError as exc:
                errors.append(str(exc))
        raise SensorError(errors[0])
    if hint is type(None):
        if value is None:
            return None
        raise SensorError(f"{where} option {key!r}: expected nothing, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise SensorError(f"{where} option {key!r}: must be one of {', '.join(map(repr, args))} (got {value!r})")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SensorError(f"{where} option {key!r}: expected a list, got {value!r}")
        item = args[0] if args else str
        return tuple(_coerce(v, item, key, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise SensorError(f"{where} option {key!r}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise SensorError(f"{where} option {key!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        raise SensorError(f"{where} option {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise SensorError(f"{where} option {key!r}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise SensorError(f"{where} option {key!r}: expected a string, got {value!r}")
    return value


def parse_options(cls: type[T], options: dict[str, Any] | None, where: str) -> T:
    """Build the options dataclass ``cls`` from a dict, naming the offending key in every error."""
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in options:
        if key not in fields:
            raise SensorError(f"{where} option {key!r} is unknown; known options: {', '.join(fields)}")
    kwargs = {key: _coerce(value, hints[key], key, where) for key, value in options.items()}
    return cls(**kwargs)


def check_choice(where: str, key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise :class:`SensorError` naming ``key`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        shown = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices)
        raise SensorError(f"{where} option {key!r}: must be one of {shown} (got {value!r})")
