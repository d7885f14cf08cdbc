"""Texas Instruments ADS1115: 16-bit ADC, 4 single-ended or 2-4 differential inputs.

Register map and maths from the datasheet (SBAS444, section 9.6). Registers are 16 bit and
big-endian on the wire. An SMBus *word* read is little-endian (low byte first), so
``read_word_data`` returns the bytes swapped: this driver reads two-byte blocks instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from device.sensors.base import BusError, OptionError, Sensor, SensorError, check_option_fields
from device.sensors.registers import Field, Register, RegisterMap

# MUX[2:0] -> channel name (positive input minus negative input, or minus GND).
MUX_CODES = {"ain0_ain1": 0, "ain0_ain3": 1, "ain1_ain3": 2, "ain2_ain3": 3, "ain0": 4, "ain1": 5, "ain2": 6, "ain3": 7}
MUX_INPUTS = {0: (0, 1), 1: (0, 3), 2: (1, 3), 3: (2, 3), 4: (0, None), 5: (1, None), 6: (2, None), 7: (3, None)}
# Full-scale range (±V) -> PGA[2:0]; codes 5, 6 and 7 all mean ±0.256 V.
PGA_CODES = {6.144: 0, 4.096: 1, 2.048: 2, 1.024: 3, 0.512: 4, 0.256: 5}
DATA_RATE_CODES = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}

# The register map (datasheet 9.6): four 16-bit registers, big-endian, behind a pointer byte. Declared
# once: the driver encodes the config word with it, the simulated chip decodes it and takes its power-on
# values from it.
REGISTERS = RegisterMap(
    "ads1115",
    Register("CONVERSION", 0x00, width=2, read_only=True),
    Register("CONFIG", 0x01, (
        Field("os", 0x8000), Field("mux", 0x7000), Field("pga", 0x0E00), Field("mode", 0x0100),
        Field("dr", 0x00E0), Field("comp_mode", 0x0010), Field("comp_pol", 0x0008), Field("comp_lat", 0x0004),
        Field("comp_que", 0x0003)), width=2, reset=0x8583),
    Register("LO_THRESH", 0x02, width=2, reset=0x8000),
    Register("HI_THRESH", 0x03, width=2, reset=0x7FFF),
)
# The config fields by meaning (channel name, ±V, samples/s, "single"/"continuous"), over the same bits.
CONFIG_MEANING = Register("CONFIG", 0x01, (
    Field("channel", 0x7000, MUX_CODES), Field("full_scale_v", 0x0E00, PGA_CODES, also={6: 0.256, 7: 0.256}),
    Field("mode", 0x0100, {"continuous": 0, "single": 1}), Field("data_rate", 0x00E0, DATA_RATE_CODES)), width=2)

REG_CONVERSION = REGISTERS.CONVERSION.address
REG_CONFIG = REGISTERS.CONFIG.address
REG_LO_THRESH = REGISTERS.LO_THRESH.address
REG_HI_THRESH = REGISTERS.HI_THRESH.address

CONFIG_DEFAULT = REGISTERS.CONFIG.reset
LO_THRESH_DEFAULT = REGISTERS.LO_THRESH.reset
HI_THRESH_DEFAULT = REGISTERS.HI_THRESH.reset

OS_BIT = REGISTERS.CONFIG.encode(os=1)
MODE_SINGLE_BIT = REGISTERS.CONFIG.encode(mode=1)
COMP_QUE_DISABLE = 0x0003


def full_scale_v(pga_code: int) -> float:
    return float(CONFIG_MEANING["full_scale_v"].decode((pga_code & 7) << 9))


def data_rate_sps(dr_code: int) -> int:
    return int(CONFIG_MEANING["data_rate"].decode((dr_code & 7) << 5))


def lsb_v(fsr: float) -> float:
    """The size of one count: FSR / 2^15 (187.5 µV at ±6.144 V ... 7.8125 µV at ±0.256 V)."""
    return fsr / 32768.0


def code_to_volts(code: int, fsr: float) -> float:
    return code * lsb_v(fsr)


def volts_to_code(volts: float, fsr: float) -> int:
    """The code the ADC outputs for ``volts`` (clipped to 0x8000..0x7FFF like the chip)."""
    return max(-32768, min(32767, round(volts / lsb_v(fsr))))


def to_signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def config_word(mux: int, pga: int, dr: int, *, single_shot: bool = True, start: bool = False,
                comp_que: int = COMP_QUE_DISABLE) -> int:
    return REGISTERS.CONFIG.encode(os=int(start), mux=mux & 7, pga=pga & 7, mode=int(single_shot), dr=dr & 7,
                                   comp_que=comp_que & 3)


def parse_config(word: int) -> dict[str, int]:
    return REGISTERS.CONFIG.decode(word)


@dataclass(frozen=True)
class ADS1115Options:
    """Configuration of an ADS1115.

    ``channels``: any of "ain0".."ain3" (single-ended, against GND) and "ain0_ain1", "ain0_ain3",
    "ain1_ain3", "ain2_ain3" (differential); ``full_scale_v``: the PGA range ±6.144, 4.096, 2.048,
    1.024, 0.512, 0.256 V; ``data_rate``: 8, 16, 32, 64, 128, 250, 475, 860 samples/s;
    ``mode``: "single" (a single-shot conversion per channel and read) or "continuous" (one channel
    only, the chip converts continuously and a read returns the newest result).
    """

    channels: tuple[str, ...] = field(default=("ain0",), metadata={"choices": tuple(MUX_CODES)})
    full_scale_v: float = field(default=4.096, metadata={"choices": tuple(PGA_CODES)})
    data_rate: int = field(default=860, metadata={"choices": tuple(DATA_RATE_CODES)})
    mode: str = field(default="single", metadata={"choices": ("single", "continuous")})

    def validate(self, where: str) -> None:
        if not self.channels:
            raise OptionError(where, "channels", f"list at least one of {', '.join(MUX_CODES)}")
        check_option_fields(self, where)
        if len(set(self.channels)) != len(self.channels):
            raise OptionError(where, "channels", f"{list(self.channels)} lists a channel twice")
        if self.mode == "continuous" and len(self.channels) != 1:
            raise OptionError(where, "mode", f"continuous mode converts one channel; "
                              f"'channels' lists {len(self.channels)}")


class ADS1115(Sensor):
    """TI ADS1115: one value in volts per configured channel."""

    name = "ads1115"
    Options = ADS1115Options
    default_address = 0x48
    addresses = (0x48, 0x49, 0x4A, 0x4B)

    def __init__(self, bus: Any, address: int | None = None, options: Any = None) -> None:
        super().__init__(bus, address, options)
        o: ADS1115Options = self.options
        o.validate(self.name)
        self.channels = tuple(o.channels)
        self.units = {c: "V" for c in self.channels}
        self._pga = PGA_CODES[o.full_scale_v]
        self._dr = DATA_RATE_CODES[o.data_rate]
        self._ready = False

    @property
    def conversion_time_s(self) -> float:
        o: ADS1115Options = self.options
        return 1.0 / o.data_rate

    def read_register(self, register: int) -> int:
        hi, lo = self.bus.read_block(self.address, register, 2)
        word: int = (hi << 8) | lo
        return word

    def write_register(self, register: int, value: int) -> None:
        self.bus.write_block(self.address, register, [(value >> 8) & 0xFF, value & 0xFF])

    def setup(self) -> None:
        o: ADS1115Options = self.options
        try:
            self.read_register(REG_CONFIG)
        except BusError as exc:
            raise self._missing(exc) from None
        # No id register: identify the chip by how its config register holds a write (OS=0 starts nothing).
        first = MUX_CODES[o.channels[0]]
        probe = config_word(first, self._pga, self._dr, single_shot=True)
        self.write_register(REG_CONFIG, probe)
        back = self.read_register(REG_CONFIG)
        if back & 0x7FFF != probe & 0x7FFF:
            raise SensorError(f"{self.where}: the config register reads back {back:#06x} after writing "
                              f"{probe:#06x}; not an ADS1115 (an ADS1015 or another chip at this address?)")
        if o.mode == "continuous":
            self.write_register(REG_CONFIG, config_word(first, self._pga, self._dr, single_shot=False))
            time.sleep(2 * self.conversion_time_s)
        self._ready = True

    def convert(self, channel: str) -> int:
        """One single-shot conversion of ``channel``; returns the signed code."""
        mux = MUX_CODES[channel]
        self.write_register(REG_CONFIG, config_word(mux, self._pga, self._dr, single_shot=True, start=True))
        time.sleep(self.conversion_time_s)
        deadline = time.monotonic() + 2 * self.conversion_time_s + 0.005
        while not self.read_register(REG_CONFIG) & OS_BIT:   # OS reads 0 while converting
            if time.monotonic() > deadline:
                raise BusError(f"{self.where}: conversion of {channel} did not finish (OS bit stuck at 0)")
            time.sleep(0.0002)
        return to_signed16(self.read_register(REG_CONVERSION))

    def read(self) -> dict[str, float]:
        if not self._ready:
            raise SensorError(f"{self.where}: read() before setup()")
        o: ADS1115Options = self.options
        fsr = full_scale_v(self._pga)
        if o.mode == "continuous":
            return {o.channels[0]: code_to_volts(to_signed16(self.read_register(REG_CONVERSION)), fsr)}
        return {ch: code_to_volts(self.convert(ch), fsr) for ch in o.channels}
