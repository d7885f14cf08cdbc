"""The device's senses: I2C sensor drivers on smbus2, a register-level simulated bus, and the bus scan.

Drivers take a bus (:mod:`device.sensors.bus` is the only module that opens ``/dev/i2c-N``);
datasheet maths are pure functions in each driver's module, next to its register layout declared as
data (:mod:`device.sensors.registers`); the package :mod:`device.sensors.sim` serves simulated chips,
with their datasheets' gravity, offsets and noise, on an smbus2-compatible
:class:`~device.sensors.sim.SimBus`. See docs/sensors.md.
"""

from device.sensors.base import BusError, DataError, Reading, Sensor, SensorError
from device.sensors.bus import BusStats, I2CBus, RetryPolicy, as_bus, open_bus
from device.sensors.registry import DRIVERS, Found, driver_class, make_driver, parse_spec, scan

__all__ = [
    "DRIVERS", "BusError", "BusStats", "DataError", "Found", "I2CBus", "Reading", "RetryPolicy", "Sensor",
    "SensorError", "as_bus", "driver_class", "make_driver", "open_bus", "parse_spec", "scan",
]
