"""Driver names -> driver classes and their options; ``make_driver``; ``parse_spec``; the bus scan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from device.sensors.ads1115 import ADS1115, HI_THRESH_DEFAULT, LO_THRESH_DEFAULT, ADS1115Options
from device.sensors.base import BusError, Sensor, SensorError, parse_options
from device.sensors.bme280 import BME280, BMP280, BME280Options
from device.sensors.bus import I2CBus, as_bus
from device.sensors.mpu6050 import MPU6050, MPU6050Options
from device.sensors.sht3x import SHT3x, SHT3xOptions


@dataclass(frozen=True)
class DriverInfo:
    driver: type[Sensor]
    options: type
    description: str


DRIVERS: dict[str, DriverInfo] = {
    "bme280": DriverInfo(BME280, BME280Options, "Bosch BME280 temperature, pressure, humidity"),
    "bmp280": DriverInfo(BMP280, BME280Options, "Bosch BMP280 temperature, pressure"),
    "mpu6050": DriverInfo(MPU6050, MPU6050Options, "InvenSense MPU-6050 accelerometer and gyroscope"),
    "sht3x": DriverInfo(SHT3x, SHT3xOptions, "Sensirion SHT3x temperature and humidity"),
    "ads1115": DriverInfo(ADS1115, ADS1115Options, "TI ADS1115 16-bit ADC"),
}


def driver_class(kind: str) -> type[Sensor]:
    try:
        return DRIVERS[kind.lower()].driver
    except KeyError:
        raise SensorError(f"unknown sensor driver {kind!r}; known drivers: {', '.join(DRIVERS)}") from None


def parse_driver_options(kind: str, options: dict[str, Any] | None) -> Any:
    """Driver ``kind``'s typed options (its ``Options`` dataclass) from a dict (TOML or the command line),
    checked as the driver will use them; raises :class:`OptionError` naming the key."""
    driver = driver_class(kind)
    name = kind.lower()
    opts: Any = parse_options(DRIVERS[name].options, options, name)
    validate = getattr(opts, "validate", None)
    if validate is not None:
        validate(driver.name)
    return opts


def make_driver(kind: str, bus: Any, address: int | None = None, options: Any = None) -> Sensor:
    """Construct the driver ``kind`` on ``bus`` (``address`` None: the chip's default address).

    ``options`` is the driver's options dataclass (from :func:`parse_driver_options`, as a loaded config
    holds it) or a plain dict, parsed here: unknown keys and bad values raise :class:`SensorError` naming
    the key. ``setup()`` is not called.
    """
    cls = driver_class(kind)
    if options is None or isinstance(options, dict):
        options = parse_driver_options(kind, options)
    return cls(bus, address, options)


_SPEC_RE = re.compile(r"^(?P<kind>[a-z0-9]+)(?:@(?P<addr>0x[0-9a-f]{1,2}|\d{1,3}))?$", re.IGNORECASE)


def parse_address(text: str | int) -> int:
    if isinstance(text, int):
        value = text
    else:
        try:
            value = int(text, 0)
        except ValueError:
            raise SensorError(f"I2C address {text!r} is not a number (write it like 0x76)") from None
    if not 0x03 <= value <= 0x77:
        raise SensorError(f"I2C address {value:#04x} is outside the 7-bit range 0x03..0x77")
    return value


def parse_spec(spec: str) -> tuple[str, int]:
    """``"bme280@0x76"`` -> ("bme280", 0x76); ``"mpu6050"`` -> ("mpu6050", 0x68)."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise SensorError(f"sensor {spec!r}: write it as DRIVER@ADDRESS, e.g. bme280@0x76 (drivers: "
                          f"{', '.join(DRIVERS)})")
    kind = m["kind"].lower()
    cls = driver_class(kind)
    return kind, parse_address(m["addr"]) if m["addr"] else cls.default_address


# --------------------------------------------------------------------------------------------
# Scan


@dataclass(frozen=True)
class Found:
    """A device that answered a scan: ``chip`` is the identified driver name or None, ``detail`` says how."""

    address: int
    chip: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"address": f"{self.address:#04x}", "chip": self.chip, "detail": self.detail}


def _probe(bus: I2CBus, address: int) -> bool:
    """i2cdetect's default probe: a read byte at 0x30-0x37 and 0x50-0x5F (EEPROMs, which a quick write
    could corrupt), a quick write elsewhere. Neither writes a data byte."""
    try:
        if 0x30 <= address <= 0x37 or 0x50 <= address <= 0x5F:
            bus.read_byte(address, retries=0)
        else:
            bus.write_quick(address, retries=0)
    except BusError:
        return False
    return True


def identify(bus: I2CBus, address: int) -> tuple[str | None, str]:
    """Name a chip at ``address`` by reading its id registers only (register-pointer reads, no writes
    to configuration). A chip without a readable id (SHT3x) is named by address and marked unprobed."""
    def reg(register: int) -> int | None:
        try:
            return bus.read_byte_data(address, register, retries=1)
        except BusError:
            return None

    if address in (0x76, 0x77):
        chip_id = reg(0xD0)
        names = {0x60: "bme280", 0x58: "bmp280", 0x56: "bmp280", 0x57: "bmp280"}
        if chip_id in names:
            return names[chip_id], f"chip id {chip_id:#04x}"
        if chip_id == 0x61:
            return None, "chip id 0x61: a BME680 (no driver)"
        return None, f"register 0xD0 reads {chip_id:#04x}: not a Bosch BMx280" if chip_id is not None else "no id"
    if address in (0x68, 0x69):
        who = reg(0x75)
        if who == 0x68:
            return "mpu6050", "WHO_AM_I 0x68"
        others = {0x70: "MPU-6500", 0x71: "MPU-9250", 0x73: "MPU-9255", 0x98: "ICM-20689", 0x19: "MPU-6886"}
        if who in others:
            return None, f"WHO_AM_I {who:#04x}: an {others[who]} (no driver)"
        return None, f"WHO_AM_I reads {who:#04x}: not an MPU (an RTC such as a DS3231?)" if who is not None \
            else "no WHO_AM_I"
    if 0x48 <= address <= 0x4B:
        try:
            words = [int.from_bytes(bus.read_block(address, r, 2, retries=1), "big") for r in (1, 2, 3)]
        except BusError:
            return None, "no answer to a register read"
        config, lo, hi = words
        if lo == LO_THRESH_DEFAULT and hi == HI_THRESH_DEFAULT:
            return "ads1115", f"threshold registers at their ADS1x15 reset values (config {config:#06x})"
        return None, f"config {config:#06x}, thresholds {lo:#06x}/{hi:#06x}: maybe an ADS1x15 set up by another program"
    if address in (0x44, 0x45):
        return None, (f"the SHT3x address, not probed (no id register; a command write could disturb another "
                      f"chip): `spinal sensors read sht3x@{address:#04x}` checks it")
    return None, ""


def scan(bus: Any, first: int = 0x03, last: int = 0x77, *, identify_chips: bool = True) -> list[Found]:
    """Probe every address from ``first`` to ``last`` like i2cdetect; identify known chips by id registers."""
    i2c = as_bus(bus)
    found = []
    for address in range(first, last + 1):
        if _probe(i2c, address):
            chip, detail = identify(i2c, address) if identify_chips else (None, "")
            found.append(Found(address, chip, detail))
    return found
