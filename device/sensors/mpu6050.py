"""InvenSense MPU-6050: 3-axis accelerometer, 3-axis gyroscope, die temperature.

Register map: RM-MPU-6000A-00 rev 4.2; scale factors: PS-MPU-6000A-00 rev 3.4 (tables 6.1, 6.2).
The 14-byte burst from ACCEL_XOUT_H (0x3B) holds seven big-endian int16: accel x, y, z,
temperature, gyro x, y, z.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from device.sensors.base import BusError, OptionError, Sensor, SensorError, check_option_fields
from device.sensors.registers import Field, Register, RegisterMap

STANDARD_GRAVITY = 9.80665
ACCEL_LSB_PER_G = {2: 16384.0, 4: 8192.0, 8: 4096.0, 16: 2048.0}
GYRO_LSB_PER_DPS = {250: 131.0, 500: 65.5, 1000: 32.8, 2000: 16.4}
ACCEL_RANGE_CODES = {2: 0, 4: 1, 8: 2, 16: 3}
GYRO_RANGE_CODES = {250: 0, 500: 1, 1000: 2, 2000: 3}
# DLPF_CFG -> (accelerometer bandwidth Hz, gyroscope bandwidth Hz); 7 is reserved.
DLPF_BANDWIDTH_HZ = {0: (260, 256), 1: (184, 188), 2: (94, 98), 3: (44, 42), 4: (21, 20), 5: (10, 10), 6: (5, 5)}
CHANNELS = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z", "temperature")

WHO_AM_I_MPU6050 = 0x68
DATA_BYTES = 14              # ACCEL_XOUT_H (0x3B) .. GYRO_ZOUT_L (0x48)

# The register map (RM-MPU-6000A-00 rev 4.2), declared once: the driver encodes with it, the simulated chip
# decodes with it and takes its power-on values from it.
REGISTERS = RegisterMap(
    "mpu6050",
    Register("SMPLRT_DIV", 0x19, (Field("divider", 0xFF),)),
    Register("CONFIG", 0x1A, (Field("ext_sync_set", 0x38), Field("dlpf_cfg", 0x07))),
    Register("GYRO_CONFIG", 0x1B, (Field("self_test", 0xE0), Field("fs_sel", 0x18, GYRO_RANGE_CODES))),
    Register("ACCEL_CONFIG", 0x1C, (Field("self_test", 0xE0), Field("afs_sel", 0x18, ACCEL_RANGE_CODES))),
    Register("INT_STATUS", 0x3A, (Field("data_rdy_int", 0x01),), read_only=True),
    Register("DATA", 0x3B, read_only=True, length=DATA_BYTES),   # ACCEL_XOUT_H .. GYRO_ZOUT_L
    Register("SIGNAL_PATH_RESET", 0x68, (Field("gyro_reset", 0x04), Field("accel_reset", 0x02),
                                         Field("temp_reset", 0x01))),
    Register("PWR_MGMT_1", 0x6B, (Field("device_reset", 0x80), Field("sleep", 0x40), Field("cycle", 0x20),
                                  Field("temp_dis", 0x08), Field("clksel", 0x07)), reset=0x40),
    Register("WHO_AM_I", 0x75, (Field("who_am_i", 0x7E),), reset=WHO_AM_I_MPU6050, read_only=True),
)

REG_SMPLRT_DIV = REGISTERS.SMPLRT_DIV.address
REG_CONFIG = REGISTERS.CONFIG.address
REG_GYRO_CONFIG = REGISTERS.GYRO_CONFIG.address
REG_ACCEL_CONFIG = REGISTERS.ACCEL_CONFIG.address
REG_INT_STATUS = REGISTERS.INT_STATUS.address
REG_ACCEL_XOUT_H = REGISTERS.DATA.address
REG_SIGNAL_PATH_RESET = REGISTERS.SIGNAL_PATH_RESET.address
REG_PWR_MGMT_1 = REGISTERS.PWR_MGMT_1.address
REG_WHO_AM_I = REGISTERS.WHO_AM_I.address

PWR_RESET = REGISTERS.PWR_MGMT_1.encode(device_reset=1)
PWR_SLEEP = REGISTERS.PWR_MGMT_1.encode(sleep=1)
CLKSEL_PLL_XGYRO = REGISTERS.PWR_MGMT_1.encode(clksel=1)


def gyro_output_rate_hz(dlpf: int) -> float:
    """Gyroscope output rate: 8 kHz with the DLPF off (0 or 7), 1 kHz otherwise."""
    return 8000.0 if dlpf in (0, 7) else 1000.0


def sample_rate_hz(dlpf: int, divider: int) -> float:
    """Sample Rate = Gyroscope Output Rate / (1 + SMPLRT_DIV)."""
    return gyro_output_rate_hz(dlpf) / (1 + divider)


def accel_to_si(raw: int, range_g: int) -> float:
    """Accelerometer counts -> m/s²."""
    return raw / ACCEL_LSB_PER_G[range_g] * STANDARD_GRAVITY


def gyro_to_si(raw: int, range_dps: int, unit: str = "rad/s") -> float:
    """Gyroscope counts -> rad/s (or °/s)."""
    dps = raw / GYRO_LSB_PER_DPS[range_dps]
    return math.radians(dps) if unit == "rad/s" else dps


def temperature_to_si(raw: int) -> float:
    """Temperature counts -> °C: raw / 340 + 36.53."""
    return raw / 340.0 + 36.53


def _clip16(x: float) -> int:
    return max(-32768, min(32767, round(x)))


def accel_from_si(ms2: float, range_g: int) -> int:
    """m/s² -> counts (saturating at the int16 limits, as the chip does)."""
    return _clip16(ms2 / STANDARD_GRAVITY * ACCEL_LSB_PER_G[range_g])


def gyro_from_si(value: float, range_dps: int, unit: str = "rad/s") -> int:
    dps = math.degrees(value) if unit == "rad/s" else value
    return _clip16(dps * GYRO_LSB_PER_DPS[range_dps])


def temperature_from_si(celsius: float) -> int:
    return _clip16((celsius - 36.53) * 340.0)


def parse_burst(block: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(ax, ay, az, temp, gx, gy, gz) counts from the 14 bytes at 0x3B."""
    return struct.unpack(">7h", bytes(block[:14]))


def encode_burst(ax: int, ay: int, az: int, temp: int, gx: int, gy: int, gz: int) -> bytes:
    return struct.pack(">7h", ax, ay, az, temp, gx, gy, gz)


def convert(raw: tuple[int, ...], accel_range_g: int, gyro_range_dps: int,
            gyro_unit: str = "rad/s") -> dict[str, float]:
    ax, ay, az, temp, gx, gy, gz = raw
    return {
        "accel_x": accel_to_si(ax, accel_range_g), "accel_y": accel_to_si(ay, accel_range_g),
        "accel_z": accel_to_si(az, accel_range_g),
        "gyro_x": gyro_to_si(gx, gyro_range_dps, gyro_unit), "gyro_y": gyro_to_si(gy, gyro_range_dps, gyro_unit),
        "gyro_z": gyro_to_si(gz, gyro_range_dps, gyro_unit),
        "temperature": temperature_to_si(temp),
    }


@dataclass(frozen=True)
class MPU6050Options:
    """Configuration of an MPU-6050.

    ``accel_range_g``: 2, 4, 8, 16; ``gyro_range_dps``: 250, 500, 1000, 2000; ``dlpf``: DLPF_CFG
    0..6 (0 = 260 Hz bandwidth, 6 = 5 Hz); ``sample_rate_div``: SMPLRT_DIV 0..255 (sample rate =
    1 kHz / (1 + div) with the DLPF on, 8 kHz / (1 + div) with it off); ``gyro_unit``: "rad/s" or "deg/s".
    """

    accel_range_g: int = field(default=2, metadata={"choices": tuple(ACCEL_RANGE_CODES)})
    gyro_range_dps: int = field(default=250, metadata={"choices": tuple(GYRO_RANGE_CODES)})
    dlpf: int = field(default=3, metadata={"choices": tuple(DLPF_BANDWIDTH_HZ)})
    sample_rate_div: int = 0
    gyro_unit: str = field(default="rad/s", metadata={"choices": ("rad/s", "deg/s")})

    def validate(self, where: str) -> None:
        check_option_fields(self, where)
        if not 0 <= self.sample_rate_div <= 255:
            raise OptionError(where, "sample_rate_div", f"must be 0..255 (got {self.sample_rate_div})")


class MPU6050(Sensor):
    """InvenSense MPU-6050: accel_x/y/z (m/s²), gyro_x/y/z (rad/s or °/s), temperature (°C)."""

    name = "mpu6050"
    Options = MPU6050Options
    default_address = 0x68
    addresses = (0x68, 0x69)
    reset_wait_s = 0.1   # the register map asks for 100 ms after DEVICE_RESET and SIGNAL_PATH_RESET

    def __init__(self, bus: Any, address: int | None = None, options: Any = None) -> None:
        super().__init__(bus, address, options)
        o: MPU6050Options = self.options
        o.validate(self.name)
        self.channels = CHANNELS
        gyro = "rad/s" if o.gyro_unit == "rad/s" else "°/s"
        self.units = {**{c: "m/s²" for c in CHANNELS[:3]}, **{c: gyro for c in CHANNELS[3:6]}, "temperature": "°C"}
        self._ready = False

    @property
    def sample_rate_hz(self) -> float:
        return sample_rate_hz(self.options.dlpf, self.options.sample_rate_div)

    def setup(self) -> None:
        bus, addr, o = self.bus, self.address, self.options
        try:
            who = bus.read_byte_data(addr, REG_WHO_AM_I)
        except BusError as exc:
            raise self._missing(exc) from None
        if who != WHO_AM_I_MPU6050:
            known = {0x70: "an MPU-6500", 0x71: "an MPU-9250", 0x73: "an MPU-9255", 0x98: "an ICM-20689",
                     0x12: "an ICM-20602", 0x19: "an MPU-6886"}.get(who, "not an MPU-6050")
            raise SensorError(f"{self.where}: WHO_AM_I reads {who:#04x} ({known}), expected {WHO_AM_I_MPU6050:#04x}; "
                              "check the driver name and address")
        # No bus lock across the waits: other sensors on the bus keep sampling meanwhile.
        bus.write_byte_data(addr, REG_PWR_MGMT_1, PWR_RESET)
        time.sleep(self.reset_wait_s)
        bus.write_byte_data(addr, REG_SIGNAL_PATH_RESET,
                            REGISTERS.SIGNAL_PATH_RESET.encode(gyro_reset=1, accel_reset=1, temp_reset=1))
        time.sleep(self.reset_wait_s)
        bus.write_byte_data(addr, REG_PWR_MGMT_1, CLKSEL_PLL_XGYRO)   # wake up, PLL with X gyro reference
        bus.write_byte_data(addr, REG_SMPLRT_DIV, REGISTERS.SMPLRT_DIV.encode(divider=o.sample_rate_div))
        bus.write_byte_data(addr, REG_CONFIG, REGISTERS.CONFIG.encode(dlpf_cfg=o.dlpf))
        bus.write_byte_data(addr, REG_GYRO_CONFIG, REGISTERS.GYRO_CONFIG.encode(fs_sel=o.gyro_range_dps))
        bus.write_byte_data(addr, REG_ACCEL_CONFIG, REGISTERS.ACCEL_CONFIG.encode(afs_sel=o.accel_range_g))
        if REGISTERS.PWR_MGMT_1.get(bus.read_byte_data(addr, REG_PWR_MGMT_1), "sleep"):
            raise SensorError(f"{self.where}: the chip did not wake up (PWR_MGMT_1 still has SLEEP set)")
        self._ready = True

    def read_raw(self) -> tuple[int, int, int, int, int, int, int]:
        if not self._ready:
            raise SensorError(f"{self.where}: read() before setup()")
        block = self.bus.read_block(self.address, REG_ACCEL_XOUT_H, DATA_BYTES)
        if not any(block):
            # Physically impossible (no gravity, 36.53 °C exactly): the chip was reset or power-cycled.
            raise BusError(f"{self.where}: the data registers read all zeros (the chip was reset or is asleep); "
                           "call setup() again")
        return parse_burst(block)

    def read(self) -> dict[str, float]:
        o: MPU6050Options = self.options
        return convert(self.read_raw(), o.accel_range_g, o.gyro_range_dps, o.gyro_unit)
