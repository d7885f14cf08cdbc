"""``[[sensors]]``: each sensor's table typed, its driver's options parsed (once, here) and its
``[sensors.sim]`` table checked, so that a typo fails at load naming the key."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from device.config.models import MAX_I2C_ADDRESS, MIN_I2C_ADDRESS, SensorConfig
from device.schema import Reader, SchemaError, did_you_mean, path_text

ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


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


def _driver_options(index: int, s: SensorConfig, table: dict[str, Any]) -> Any:
    """The driver's typed options, parsed once (the daemon constructs the driver with them)."""
    from device.sensors.base import OptionError, SensorError
    from device.sensors.registry import make_driver, parse_driver_options

    path = ("sensors", index, "options")
    try:
        options = parse_driver_options(s.driver, table)
        make_driver(s.driver, NoBus(), s.address, options)  # the driver's own checks of options and address
    except OptionError as exc:
        raise SchemaError((*path, exc.key) if exc.key in table else path, str(exc)) from None
    except SensorError as exc:
        raise SchemaError(path, str(exc)) from None
    return options


def _check_driver_address(index: int, s: SensorConfig) -> None:
    """An address the chip cannot have (an SHT3x at 0x40) is a config error, not a sensor retried forever."""
    from device.sensors.registry import driver_class

    allowed = driver_class(s.driver).addresses
    if s.address is not None and allowed and s.address not in allowed:
        raise SchemaError(("sensors", index, "address"),
                          f"0x{s.address:02x} is not an address a {s.driver} can have (it answers at "
                          f"{' or '.join(f'0x{a:02x}' for a in allowed)})")


def _sim_spec(index: int, s: SensorConfig) -> Any:
    """``[sensors.sim]`` typed as ``spinal run --sim`` reads it (:func:`device.sensors.sim.check_sim_table`), at
    load: a typo is an error naming file, line and key (``--check`` refuses it), not a sensor retried forever."""
    try:
        from device.sensors.sim import SimSpecError, check_sim_table
    except ImportError:  # pragma: no cover - the simulator ships with device
        return s.sim
    where = ("sensors", index, "sim")
    try:
        return check_sim_table(s.driver, s.sim, where=path_text(where))
    except SimSpecError as exc:
        # The message names the table (sensors[0].sim: unknown key 'x'); the line is that of the key.
        raise exc.under(where) from None


def read_sensor(reader: Reader, index: int, table: Any, taken: list[SensorConfig],
                drivers: tuple[str, ...] | None) -> SensorConfig:
    """Sensor ``index`` of ``[[sensors]]``, checked against its driver and the sensors before it."""
    s = reader.build(SensorConfig, table, ("sensors", index))
    if not ID_RE.match(s.id) or "." in s.id:
        raise SchemaError(("sensors", index, "id"), f"{s.id!r} must start with a letter and hold up to 64 letters, "
                                                    "digits, '_' or '-'")
    if any(o.id == s.id for o in taken):
        raise SchemaError(("sensors", index, "id"), f"{s.id!r} is already the id of another sensor; ids must be "
                                                    "unique")
    if drivers is not None and s.driver not in drivers:
        raise SchemaError(("sensors", index, "driver"), f"unknown driver {s.driver!r}"
                                                        f"{did_you_mean(s.driver, drivers)} "
                                                        f"(known: {', '.join(sorted(drivers))})")
    if s.address is not None and not MIN_I2C_ADDRESS <= s.address <= MAX_I2C_ADDRESS:
        raise SchemaError(("sensors", index, "address"),
                          f"0x{s.address:02x} ({s.address}) is not a 7-bit I2C device address; expected "
                          f"0x{MIN_I2C_ADDRESS:02x}..0x{MAX_I2C_ADDRESS:02x}, e.g. 0x68")
    options_table = reader.convert(table.get("options", {}), dict[str, Any], ("sensors", index, "options"))
    if drivers is not None:
        _check_driver_address(index, s)
        s = dataclasses.replace(s, options=_driver_options(index, s, options_table))
    s = dataclasses.replace(s, sim=_sim_spec(index, s))
    if s.retry_max_s < s.retry_initial_s:
        raise SchemaError(("sensors", index, "retry_max_s"),
                          f"must be >= retry_initial_s ({s.retry_initial_s}), got {s.retry_max_s}")
    return s


def read_sensors(reader: Reader, value: Any) -> tuple[SensorConfig, ...]:
    """``[[sensors]]``: one or more sensors with unique ids."""
    if value is None:
        raise SchemaError((), "missing [[sensors]]: configure at least one sensor (id, driver, bus, address, "
                              "rate_hz)")
    if not isinstance(value, list) or not value:
        raise SchemaError(("sensors",), "expected one or more [[sensors]] tables")
    drivers = known_drivers()
    out: list[SensorConfig] = []
    for i, table in enumerate(value):
        out.append(read_sensor(reader, i, table, out, drivers))
    return tuple(out)
