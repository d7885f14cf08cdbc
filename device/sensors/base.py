"""What every sensor driver shares: the :class:`Reading`, the :class:`Sensor` base class, errors, options.

A driver is constructed as ``Driver(bus, address, options)``; ``bus`` is a
:class:`device.sensors.bus.I2CBus` (or anything smbus2-like, which is wrapped in one),
``options`` the driver's typed options dataclass. ``setup()`` identifies the chip, resets and
configures it; ``read()`` returns one sample as ``{channel: SI value}``.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from device.errors import BadInput, SpinalError
from device.schema import Reader, SchemaError, check_fields


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
# Options: dicts from a config file or the command line -> typed dataclasses (device.schema)

T = TypeVar("T")


class OptionError(SensorError):
    """A driver option is wrong: ``key`` is the option's name, ``detail`` what is wrong."""

    def __init__(self, where: str, key: str, detail: str, *, unknown: bool = False) -> None:
        super().__init__(f"{where} option {key!r} {detail}" if unknown else f"{where} option {key!r}: {detail}")
        self.key = key
        self.detail = detail


_OPTION_READER = Reader(from_text=True)  # "-o rate=0x10" on the command line: strings are numbers too


def parse_options(cls: type[T], options: dict[str, Any] | None, where: str) -> T:
    """Build the options dataclass ``cls`` from a dict, naming the offending key in every error
    (:class:`OptionError`)."""
    options = dict(options or {})
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in options:
        if key not in known:
            raise OptionError(where, key, f"is unknown; known options: {', '.join(known)}", unknown=True)
    try:
        return _OPTION_READER.build(cls, options)
    except SchemaError as exc:
        key = str(exc.path[0]) if exc.path else "?"
        raise OptionError(where, key, exc.detail) from None


def check_option_fields(options: Any, where: str) -> None:
    """Check options against their fields' metadata (``choices``...), as parsing does, for options made by
    hand; raises :class:`OptionError` naming the key."""
    try:
        check_fields(options)
    except SchemaError as exc:
        raise OptionError(where, str(exc.path[0]), exc.detail) from None


def check_choice(where: str, key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise :class:`OptionError` naming ``key`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        shown = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices)
        raise OptionError(where, key, f"must be one of {shown} (got {value!r})")
