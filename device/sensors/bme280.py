"""Bosch BME280 (temperature, pressure, humidity) and BMP280 (no humidity).

Register map and maths from the BME280 datasheet (BST-BME280-DS002, sections 4.2.3, 5.4, 8.1,
8.2 and appendix B) and the BMP280 datasheet (BST-BMP280-DS001, section 3.11/3.12). The
compensation formulas are pure functions below, with their inverses (SI -> raw ADC counts) that
the simulator uses to encode recordings.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from device.sensors.base import BusError, OptionError, Sensor, SensorError, check_choice, check_option_fields
from device.sensors.registers import Field, Register, RegisterMap

RESET_WORD = 0xB6
CHIP_ID_BME280 = 0x60
CHIP_IDS_BMP280 = (0x58, 0x56, 0x57)  # 0x56/0x57 were engineering samples
MODE_SLEEP, MODE_FORCED, MODE_NORMAL = 0b00, 0b01, 0b11
SKIPPED_20BIT = 0x80000   # what a skipped temperature/pressure measurement reads
SKIPPED_16BIT = 0x8000    # what a skipped humidity measurement reads

OVERSAMPLING_CODES = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}   # factor -> osrs_x bits
FILTER_CODES = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}                # IIR coefficient -> filter bits
STANDBY_CODES_BME280 = {0.5: 0, 62.5: 1, 125.0: 2, 250.0: 3, 500.0: 4, 1000.0: 5, 10.0: 6, 20.0: 7}
STANDBY_CODES_BMP280 = {0.5: 0, 62.5: 1, 125.0: 2, 250.0: 3, 500.0: 4, 1000.0: 5, 2000.0: 6, 4000.0: 7}
MODE_CODES = {"sleep": MODE_SLEEP, "forced": MODE_FORCED, "normal": MODE_NORMAL}


def _osrs_field(name: str, mask: int) -> Field:
    return Field(name, mask, OVERSAMPLING_CODES, also={6: 16, 7: 16})


# The register map (BME280 datasheet section 5.3/5.4, BMP280 4.2/4.3), declared once: the driver encodes
# with it, the simulated chip decodes with it and takes its power-on values from it.
REGISTERS_BME280 = RegisterMap(
    "bme280",
    Register("CALIB_00", 0x88, read_only=True, length=26),     # dig_T1..dig_P9, (0xA0), dig_H1
    Register("CHIP_ID", 0xD0, reset=CHIP_ID_BME280, read_only=True),
    Register("RESET", 0xE0, (Field("reset", 0xFF),)),          # write 0xB6: power-on reset; reads 0
    Register("CALIB_26", 0xE1, read_only=True, length=7),      # dig_H2..dig_H6
    Register("CTRL_HUM", 0xF2, (Field("osrs_h", 0x07, OVERSAMPLING_CODES, also={6: 16, 7: 16}),)),
    Register("STATUS", 0xF3, (Field("measuring", 0x08), Field("im_update", 0x01)), read_only=True),
    Register("CTRL_MEAS", 0xF4, (_osrs_field("osrs_t", 0xE0), _osrs_field("osrs_p", 0x1C),
                                 Field("mode", 0x03, MODE_CODES, also={0b10: "forced"}))),
    Register("CONFIG", 0xF5, (Field("t_sb", 0xE0, STANDBY_CODES_BME280), Field("filter", 0x1C, FILTER_CODES,
                                                                                   also={5: 16, 6: 16, 7: 16}),
                              Field("spi3w_en", 0x01))),
    Register("DATA", 0xF7, read_only=True, length=8),          # press_msb .. hum_lsb
)
REGISTERS_BMP280 = REGISTERS_BME280.replace(
    "bmp280",
    Register("CHIP_ID", 0xD0, reset=CHIP_IDS_BMP280[0], read_only=True),
    Register("CALIB_00", 0x88, read_only=True, length=26),     # 0xA1 (dig_H1 on a BME280) is unused
    Register("CONFIG", 0xF5, (Field("t_sb", 0xE0, STANDBY_CODES_BMP280), Field("filter", 0x1C, FILTER_CODES,
                                                                                   also={5: 16, 6: 16, 7: 16}),
                              Field("spi3w_en", 0x01))),
    Register("DATA", 0xF7, read_only=True, length=6),          # press_msb .. temp_xlsb
    drop=("CALIB_26", "CTRL_HUM"),
)
REGISTERS = {"bme280": REGISTERS_BME280, "bmp280": REGISTERS_BMP280}

REG_CALIB_00 = REGISTERS_BME280.CALIB_00.address
REG_CHIP_ID = REGISTERS_BME280.CHIP_ID.address
REG_RESET = REGISTERS_BME280.RESET.address
REG_CALIB_26 = REGISTERS_BME280.CALIB_26.address
REG_CTRL_HUM = REGISTERS_BME280.CTRL_HUM.address
REG_STATUS = REGISTERS_BME280.STATUS.address
REG_CTRL_MEAS = REGISTERS_BME280.CTRL_MEAS.address
REG_CONFIG = REGISTERS_BME280.CONFIG.address
REG_DATA = REGISTERS_BME280.DATA.address
STATUS_MEASURING = REGISTERS_BME280.STATUS.encode(measuring=1)
STATUS_IM_UPDATE = REGISTERS_BME280.STATUS.encode(im_update=1)


def oversampling_factor(code: int) -> int:
    """osrs_x bits -> factor (0 = skipped; 5, 6, 7 all mean x16)."""
    return int(REGISTERS_BME280.CTRL_HUM["osrs_h"].decode(code & 7))


def filter_coefficient(code: int) -> int:
    """filter bits -> IIR coefficient (0 = off; 5, 6, 7 all mean 16)."""
    field = REGISTERS_BME280.CONFIG["filter"]
    return int(field.decode((code & 7) << field.shift))


def standby_ms(code: int, chip: str = "bme280") -> float:
    field = REGISTERS[chip].CONFIG["t_sb"]
    return float(field.decode((code & 7) << field.shift))


def measurement_time_ms(osrs_t: int, osrs_p: int, osrs_h: int = 0) -> float:
    """Maximum measurement time in ms for oversampling *factors* (datasheet appendix B)."""
    t = 1.25 + 2.3 * osrs_t
    if osrs_p:
        t += 2.3 * osrs_p + 0.575
    if osrs_h:
        t += 2.3 * osrs_h + 0.575
    return t


@dataclass(frozen=True)
class Calibration:
    """The trimming parameters dig_T1..dig_H6 read from the chip's NVM."""

    T1: int
    T2: int
    T3: int
    P1: int
    P2: int
    P3: int
    P4: int
    P5: int
    P6: int
    P7: int
    P8: int
    P9: int
    H1: int = 0
    H2: int = 0
    H3: int = 0
    H4: int = 0
    H5: int = 0
    H6: int = 0


def parse_calibration(block1: bytes, block2: bytes | None = None) -> Calibration:
    """Decode 26 bytes from 0x88 (and, for a BME280, 7 bytes from 0xE1) into a :class:`Calibration`."""
    if len(block1) < 26:
        raise ValueError("calibration block 0x88..0xA1 needs 26 bytes")
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack_from("<HhhHhhhhhhhh", block1, 0)
    h1 = block1[25]
    h2 = h3 = h4 = h5 = h6 = 0
    if block2 is not None:
        if len(block2) < 7:
            raise ValueError("calibration block 0xE1..0xE7 needs 7 bytes")
        h2 = struct.unpack_from("<h", block2, 0)[0]
        h3 = block2[2]
        e4, e5, e6 = block2[3], block2[4], block2[5]
        h4 = _s12((e4 << 4) | (e5 & 0x0F))
        h5 = _s12((e6 << 4) | (e5 >> 4))
        h6 = struct.unpack_from("<b", block2, 6)[0]
    return Calibration(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def encode_calibration(cal: Calibration) -> tuple[bytes, bytes]:
    """The inverse of :func:`parse_calibration`: the bytes at 0x88..0xA1 and 0xE1..0xE7."""
    block1 = struct.pack("<HhhHhhhhhhhh", cal.T1, cal.T2, cal.T3, cal.P1, cal.P2, cal.P3, cal.P4, cal.P5,
                         cal.P6, cal.P7, cal.P8, cal.P9) + bytes([0x00, cal.H1 & 0xFF])
    h4, h5 = cal.H4 & 0xFFF, cal.H5 & 0xFFF
    block2 = struct.pack("<hB", cal.H2, cal.H3 & 0xFF) + bytes([h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4]) \
        + struct.pack("<b", cal.H6)
    return block1, block2


def _s12(v: int) -> int:
    return v - 0x1000 if v & 0x800 else v


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def parse_data(block: bytes) -> tuple[int, int, int | None]:
    """Raw (adc_P, adc_T, adc_H) from the burst read at 0xF7 (adc_H None for 6 bytes)."""
    adc_p = (block[0] << 12) | (block[1] << 4) | (block[2] >> 4)
    adc_t = (block[3] << 12) | (block[4] << 4) | (block[5] >> 4)
    adc_h = (block[6] << 8) | block[7] if len(block) >= 8 else None
    return adc_p, adc_t, adc_h


def encode_data(adc_p: int, adc_t: int, adc_h: int | None = None) -> bytes:
    """The inverse of :func:`parse_data`."""
    out = bytes([(adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                 (adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4])
    if adc_h is not None:
        out += bytes([(adc_h >> 8) & 0xFF, adc_h & 0xFF])
    return out


# --------------------------------------------------------------------------------------------
# Compensation, integer versions (datasheet 4.2.3 / 8.2): return t_fine and fixed-point results


def t_fine_int(adc_t: int, cal: Calibration) -> int:
    var1 = (((adc_t >> 3) - (cal.T1 << 1)) * cal.T2) >> 11
    var2 = (((((adc_t >> 4) - cal.T1) * ((adc_t >> 4) - cal.T1)) >> 12) * cal.T3) >> 14
    return var1 + var2


def compensate_temperature_int(adc_t: int, cal: Calibration) -> tuple[int, int]:
    """(temperature in 0.01 °C, t_fine). The datasheet example: 519888 -> 2508 (25.08 °C)."""
    t_fine = t_fine_int(adc_t, cal)
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_pressure_int64(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Pressure in Pa as unsigned Q24.8 (divide by 256), the 64-bit formula."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.P6
    var2 = var2 + ((var1 * cal.P5) << 17)
    var2 = var2 + (cal.P4 << 35)
    var1 = ((var1 * var1 * cal.P3) >> 8) + ((var1 * cal.P2) << 12)
    var1 = (((1 << 47) + var1) * cal.P1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal.P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.P7 << 4)


def compensate_pressure_int32(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Pressure in Pa, the 32-bit formula (BMP280 datasheet 3.11.3). The worked example's adc_P 415148 at its
    t_fine gives 100656 Pa with this listing (the datasheet's table quotes 100653 Pa, from the floating-point
    formula)."""
    var1 = (t_fine >> 1) - 64000
    var2 = (((var1 >> 2) * (var1 >> 2)) >> 11) * cal.P6
    var2 = var2 + ((var1 * cal.P5) << 1)
    var2 = (var2 >> 2) + (cal.P4 << 16)
    var1 = (((cal.P3 * (((var1 >> 2) * (var1 >> 2)) >> 13)) >> 3) + ((cal.P2 * var1) >> 1)) >> 18
    var1 = ((32768 + var1) * cal.P1) >> 15
    if var1 == 0:
        return 0
    p = ((1048576 - adc_p - (var2 >> 12)) * 3125) & 0xFFFFFFFF
    p = (p << 1) // var1 if p < 0x80000000 else (p // var1) * 2
    var1 = (cal.P9 * (((p >> 3) * (p >> 3)) >> 13)) >> 12
    var2 = ((p >> 2) * cal.P8) >> 13
    return (p + ((var1 + var2 + cal.P7) >> 4)) & 0xFFFFFFFF


def compensate_humidity_int(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Relative humidity in %RH as unsigned Q22.10 (divide by 1024)."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (cal.H4 << 20) - (cal.H5 * v)) + 16384) >> 15) * \
        (((((((v * cal.H6) >> 10) * (((v * cal.H3) >> 11) + 32768)) >> 10) + 2097152) * cal.H2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.H1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


# --------------------------------------------------------------------------------------------
# Compensation, floating-point versions (datasheet 8.1)


def compensate_temperature_float(adc_t: int, cal: Calibration) -> tuple[float, float]:
    """(temperature in °C, t_fine). t_fine stays a float (the datasheet's worked example keeps
    128422.2869, which is what gives its 100653.27 Pa; the C listing truncates it to an int)."""
    var1 = (adc_t / 16384.0 - cal.T1 / 1024.0) * cal.T2
    var2 = (adc_t / 131072.0 - cal.T1 / 8192.0) ** 2 * cal.T3
    return (var1 + var2) / 5120.0, var1 + var2


def compensate_pressure_float(adc_p: int, t_fine: float, cal: Calibration) -> float:
    """Pressure in Pa."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.P6 / 32768.0
    var2 = var2 + var1 * cal.P5 * 2.0
    var2 = var2 / 4.0 + cal.P4 * 65536.0
    var1 = (cal.P3 * var1 * var1 / 524288.0 + cal.P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.P1
    if var1 == 0.0:
        return 0.0
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.P9 * p * p / 2147483648.0
    var2 = p * cal.P8 / 32768.0
    return p + (var1 + var2 + cal.P7) / 16.0


def compensate_humidity_float(adc_h: int, t_fine: float, cal: Calibration) -> float:
    """Relative humidity in %RH, clamped to 0..100."""
    h = t_fine - 76800.0
    h = (adc_h - (cal.H4 * 64.0 + cal.H5 / 16384.0 * h)) * (
        cal.H2 / 65536.0 * (1.0 + cal.H6 / 67108864.0 * h * (1.0 + cal.H3 / 67108864.0 * h)))
    h = h * (1.0 - cal.H1 * h / 524288.0)
    return min(max(h, 0.0), 100.0)


def compensate(adc_p: int | None, adc_t: int, adc_h: int | None, cal: Calibration,
               method: str = "int") -> dict[str, float]:
    """Everything at once, in SI (°C, Pa, %RH); ``None`` (skipped) channels are left out."""
    out: dict[str, float] = {}
    if method == "float":
        out["temperature"], t_fine = compensate_temperature_float(adc_t, cal)
        if adc_p is not None:
            out["pressure"] = compensate_pressure_float(adc_p, t_fine, cal)
        if adc_h is not None:
            out["humidity"] = compensate_humidity_float(adc_h, t_fine, cal)
        return out
    t, t_fine = compensate_temperature_int(adc_t, cal)
    out["temperature"] = t / 100.0
    if adc_p is not None:
        out["pressure"] = compensate_pressure_int64(adc_p, t_fine, cal) / 256.0
    if adc_h is not None:
        out["humidity"] = compensate_humidity_int(adc_h, t_fine, cal) / 1024.0
    return out


# --------------------------------------------------------------------------------------------
# Inverses (SI -> raw ADC counts), used by the simulator to encode recordings


def _invert(func: Callable[[int], float], target: float, lo: int, hi: int) -> int:
    """The integer x in [lo, hi] whose ``func(x)`` is closest to ``target``; ``func`` monotonic."""
    increasing = func(hi) >= func(lo)
    a, b = lo, hi
    while b - a > 1:
        mid = (a + b) // 2
        if (func(mid) < target) == increasing:
            a = mid
        else:
            b = mid
    return a if abs(func(a) - target) <= abs(func(b) - target) else b


def encode_temperature(celsius: float, cal: Calibration) -> int:
    """adc_T whose integer compensation is closest to ``celsius``."""
    return _invert(lambda x: compensate_temperature_int(x, cal)[0] / 100.0, celsius, 0, (1 << 20) - 1)


def encode_pressure(pascal: float, t_fine: int, cal: Calibration) -> int:
    """adc_P whose 64-bit compensation (at ``t_fine``) is closest to ``pascal``."""
    return _invert(lambda x: compensate_pressure_int64(x, t_fine, cal) / 256.0, pascal, 0, (1 << 20) - 1)


def encode_humidity(rh: float, t_fine: int, cal: Calibration) -> int:
    """adc_H whose integer compensation (at ``t_fine``) is closest to ``rh`` (%RH)."""
    return _invert(lambda x: compensate_humidity_int(x, t_fine, cal) / 1024.0, rh, 0, (1 << 16) - 1)


# --------------------------------------------------------------------------------------------
# The driver

Oversampling = Literal[0, 1, 2, 4, 8, 16]


_OVERSAMPLING = {"choices": tuple(OVERSAMPLING_CODES)}


@dataclass(frozen=True)
class BME280Options:
    """Configuration of a BME280/BMP280.

    ``*_oversampling``: 0 (skip), 1, 2, 4, 8, 16; ``iir_filter``: 0 (off), 2, 4, 8, 16;
    ``mode``: "forced" (one measurement per read, the chip sleeps in between) or "normal"
    (the chip measures continuously every ``standby_ms``; a read returns the newest result);
    ``compensation``: "int" (datasheet fixed-point, 64-bit pressure) or "float" (double).
    """

    temperature_oversampling: int = field(default=1, metadata=_OVERSAMPLING)
    pressure_oversampling: int = field(default=1, metadata=_OVERSAMPLING)
    humidity_oversampling: int = field(default=1, metadata=_OVERSAMPLING)
    iir_filter: int = field(default=0, metadata={"choices": tuple(FILTER_CODES)})
    mode: str = field(default="forced", metadata={"choices": ("forced", "normal")})
    standby_ms: float = 0.5  # its choices depend on the chip: checked by validate()
    compensation: str = field(default="int", metadata={"choices": ("int", "float")})

    def validate(self, chip: str) -> None:
        w = chip
        check_option_fields(self, w)
        if self.temperature_oversampling == 0:
            raise OptionError(w, "temperature_oversampling", "must not be 0, the pressure and humidity "
                              "compensation need the temperature")
        check_choice(w, "standby_ms", self.standby_ms,
                     STANDBY_CODES_BMP280 if chip == "bmp280" else STANDBY_CODES_BME280)


class BME280(Sensor):
    """Bosch BME280: temperature (°C), pressure (Pa), humidity (%RH)."""

    name = "bme280"
    Options = BME280Options
    default_address = 0x76
    addresses = (0x76, 0x77)
    has_humidity = True
    chip_ids: tuple[int, ...] = (CHIP_ID_BME280,)

    def __init__(self, bus: Any, address: int | None = None, options: Any = None) -> None:
        super().__init__(bus, address, options)
        o: BME280Options = self.options
        o.validate(self.name)
        channels = ["temperature"]
        if o.pressure_oversampling:
            channels.append("pressure")
        if self.has_humidity and o.humidity_oversampling:
            channels.append("humidity")
        self.channels = tuple(channels)
        self.units = {"temperature": "°C", "pressure": "Pa", "humidity": "%RH"}
        self.units = {c: self.units[c] for c in self.channels}
        self.calibration: Calibration | None = None
        self.chip_id: int | None = None
        self._ctrl_meas = 0
        self._data_len = 8 if self.has_humidity else 6

    @property
    def measurement_time_s(self) -> float:
        o: BME280Options = self.options
        return measurement_time_ms(o.temperature_oversampling, o.pressure_oversampling,
                                   o.humidity_oversampling if self.has_humidity else 0) / 1000.0

    def setup(self) -> None:
        bus, addr = self.bus, self.address
        try:
            chip_id = bus.read_byte_data(addr, REG_CHIP_ID)
        except BusError as exc:
            raise self._missing(exc) from None
        if chip_id not in self.chip_ids:
            known = {CHIP_ID_BME280: "a BME280", 0x58: "a BMP280", 0x61: "a BME680"}.get(chip_id, "not a Bosch sensor")
            raise SensorError(f"{self.where}: chip id {chip_id:#04x} is {known}, expected "
                              f"{'/'.join(f'{c:#04x}' for c in self.chip_ids)}; check the driver name and address")
        self.chip_id = chip_id
        bus.write_byte_data(addr, REG_RESET, RESET_WORD)
        deadline = time.monotonic() + 0.05   # start-up time is 2 ms; NVM copy sets im_update meanwhile
        time.sleep(0.002)
        while bus.read_byte_data(addr, REG_STATUS) & STATUS_IM_UPDATE:
            if time.monotonic() > deadline:
                raise SensorError(f"{self.where}: the chip did not finish its reset (status im_update stuck)")
            time.sleep(0.001)
        block1 = bus.read_block(addr, REG_CALIB_00, 26)
        block2 = bus.read_block(addr, REG_CALIB_26, 7) if self.has_humidity else None
        self.calibration = parse_calibration(block1, block2)
        if self.calibration.T1 == 0 or self.calibration.P1 == 0:
            raise SensorError(f"{self.where}: the calibration NVM reads as zeros; the chip is faulty")
        self._configure()

    def _configure(self) -> None:
        o: BME280Options = self.options
        bus, addr = self.bus, self.address
        regs = REGISTERS[self.name]
        config = regs.CONFIG.encode(t_sb=o.standby_ms, filter=o.iir_filter)
        bus.write_byte_data(addr, REG_CONFIG, config)   # written in sleep mode (normal-mode writes may be ignored)
        if self.has_humidity:
            # ctrl_hum only takes effect after the next write of ctrl_meas (datasheet 5.4.3).
            bus.write_byte_data(addr, REG_CTRL_HUM, regs.CTRL_HUM.encode(osrs_h=o.humidity_oversampling))
        self._ctrl_meas = regs.CTRL_MEAS.encode(osrs_t=o.temperature_oversampling, osrs_p=o.pressure_oversampling)
        mode = "normal" if o.mode == "normal" else "sleep"
        bus.write_byte_data(addr, REG_CTRL_MEAS, regs.CTRL_MEAS.encode(self._ctrl_meas, mode=mode))
        if o.mode == "normal":
            time.sleep(self.measurement_time_s)   # so that the first read has a result

    def read_raw(self) -> tuple[int | None, int, int | None]:
        """(adc_P, adc_T, adc_H) of one measurement, ``None`` for skipped channels."""
        if self.calibration is None:
            raise SensorError(f"{self.where}: read() before setup()")
        o: BME280Options = self.options
        bus, addr = self.bus, self.address
        # The bus lock is not held across the measurement time: other sensors keep the bus meanwhile.
        if o.mode == "forced":
            bus.write_byte_data(addr, REG_CTRL_MEAS, REGISTERS_BME280.CTRL_MEAS.encode(self._ctrl_meas, mode="forced"))
            time.sleep(self.measurement_time_s)
            deadline = time.monotonic() + self.measurement_time_s + 0.01
            while bus.read_byte_data(addr, REG_STATUS) & STATUS_MEASURING:
                if time.monotonic() > deadline:
                    raise BusError(f"{self.where}: measurement did not finish (status 'measuring' stuck)")
                time.sleep(0.0005)
        block = bus.read_block(addr, REG_DATA, self._data_len)   # one burst: the chip shadows the data
        adc_p, adc_t, adc_h = parse_data(block)
        return (adc_p if o.pressure_oversampling else None, adc_t,
                adc_h if self.has_humidity and o.humidity_oversampling else None)

    def read(self) -> dict[str, float]:
        adc_p, adc_t, adc_h = self.read_raw()
        if adc_t == SKIPPED_20BIT:
            raise BusError(f"{self.where}: the chip returned its 'no measurement' pattern (was it reset? "
                           "call setup() again)")
        assert self.calibration is not None
        return compensate(adc_p, adc_t, adc_h, self.calibration, self.options.compensation)


class BMP280(BME280):
    """Bosch BMP280: temperature (°C) and pressure (Pa)."""

    name = "bmp280"
    has_humidity = False
    chip_ids = CHIP_IDS_BMP280

