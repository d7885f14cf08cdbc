"""Sensirion SHT3x (SHT30/31/35): temperature and relative humidity.

Commands and maths from the SHT3x-DIS datasheet (v6, 2019): 16-bit commands sent MSB first;
every 16-bit data word is followed by a CRC-8 (polynomial 0x31, init 0xFF, no reflection,
no final XOR; CRC(0xBEEF) = 0x92). The chip has no id register: ``setup()`` identifies it
by its status register and that register's CRC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from device.sensors.base import BusError, DataError, OptionError, Sensor, SensorError, check_option_fields
from device.sensors.registers import Field, Register

CMD_SINGLE_STRETCH = {"high": 0x2C06, "medium": 0x2C0D, "low": 0x2C10}
CMD_SINGLE = {"high": 0x2400, "medium": 0x240B, "low": 0x2416}
CMD_PERIODIC = {
    0.5: {"high": 0x2032, "medium": 0x2024, "low": 0x202F},
    1.0: {"high": 0x2130, "medium": 0x2126, "low": 0x212D},
    2.0: {"high": 0x2236, "medium": 0x2220, "low": 0x222B},
    4.0: {"high": 0x2334, "medium": 0x2322, "low": 0x2329},
    10.0: {"high": 0x2737, "medium": 0x2721, "low": 0x272A},
}
CMD_FETCH = 0xE000
CMD_ART = 0x2B32
CMD_BREAK = 0x3093
CMD_SOFT_RESET = 0x30A2
CMD_HEATER_ON = 0x306D
CMD_HEATER_OFF = 0x3066
CMD_READ_STATUS = 0xF32D
CMD_CLEAR_STATUS = 0x3041
CMD_READ_SERIAL = 0x3780

# Maximum measurement duration per repeatability (datasheet table 4), in seconds.
MEASUREMENT_S = {"high": 0.0155, "medium": 0.0065, "low": 0.0045}
SOFT_RESET_S = 0.0015

# The status register (datasheet 4.11, table 17), read with CMD_READ_STATUS; after a reset it reads 0x8010
# (an alert pending, a reset detected). Declared once: the driver decodes with it, the simulated chip serves it.
STATUS = Register("STATUS", CMD_READ_STATUS, (
    Field("alert_pending", 1 << 15), Field("heater_on", 1 << 13), Field("rh_alert", 1 << 11),
    Field("t_alert", 1 << 10), Field("reset_detected", 1 << 4), Field("command_failed", 1 << 1),
    Field("write_crc_failed", 1 << 0)), width=2, reset=0x8010, read_only=True)
# Bits that CMD_CLEAR_STATUS clears (the heater and command bits reflect the current state).
STATUS_CLEARED_BY_CLEAR = STATUS.encode(alert_pending=1, rh_alert=1, t_alert=1, reset_detected=1)

STATUS_ALERT_PENDING = STATUS.encode(alert_pending=1)
STATUS_HEATER = STATUS.encode(heater_on=1)
STATUS_RH_ALERT = STATUS.encode(rh_alert=1)
STATUS_T_ALERT = STATUS.encode(t_alert=1)
STATUS_RESET_DETECTED = STATUS.encode(reset_detected=1)
STATUS_COMMAND_FAILED = STATUS.encode(command_failed=1)
STATUS_WRITE_CRC_FAILED = STATUS.encode(write_crc_failed=1)


def crc8(data: bytes | list[int]) -> int:
    """Sensirion CRC-8: polynomial 0x31 (x^8 + x^5 + x^4 + 1), init 0xFF. ``crc8(b"\\xbe\\xef") == 0x92``."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def word_with_crc(word: int) -> bytes:
    """A 16-bit word as the chip sends it: MSB, LSB, CRC."""
    data = bytes([(word >> 8) & 0xFF, word & 0xFF])
    return data + bytes([crc8(data)])


def check_words(data: bytes) -> list[int]:
    """Split ``data`` (3 bytes a word) into 16-bit words; ``ValueError`` on a CRC mismatch."""
    if len(data) % 3:
        raise ValueError(f"{len(data)} bytes is not a whole number of (word, CRC) triples")
    words = []
    for i in range(0, len(data), 3):
        chunk = data[i:i + 2]
        if crc8(chunk) != data[i + 2]:
            raise ValueError(f"CRC mismatch in word {i // 3}: got {data[i + 2]:#04x}, computed {crc8(chunk):#04x}")
        words.append((chunk[0] << 8) | chunk[1])
    return words


def temperature_to_si(raw: int) -> float:
    """T [°C] = -45 + 175 * S_T / (2^16 - 1)."""
    return -45.0 + 175.0 * raw / 65535.0


def humidity_to_si(raw: int) -> float:
    """RH [%] = 100 * S_RH / (2^16 - 1)."""
    return 100.0 * raw / 65535.0


def temperature_from_si(celsius: float) -> int:
    return max(0, min(65535, round((celsius + 45.0) * 65535.0 / 175.0)))


def humidity_from_si(rh: float) -> int:
    return max(0, min(65535, round(rh * 65535.0 / 100.0)))


def command_bytes(cmd: int) -> bytes:
    return bytes([(cmd >> 8) & 0xFF, cmd & 0xFF])


@dataclass(frozen=True)
class SHT3xOptions:
    """Configuration of an SHT3x.

    ``mode``: "single" (one single-shot measurement per read) or "periodic" (the chip measures
    ``periodic_mps`` times a second, a read fetches the newest result); ``repeatability``:
    "high", "medium", "low"; ``clock_stretching``: single-shot with clock stretching (the
    Raspberry Pi's I2C controller handles stretching badly, hence off by default); ``heater``:
    switch the built-in heater on (for condensation tests; it warps the readings);
    ``crc_retries``: measurements repeated after a CRC mismatch before giving up.
    """

    mode: str = field(default="single", metadata={"choices": ("single", "periodic")})
    repeatability: str = field(default="high", metadata={"choices": ("high", "medium", "low")})
    periodic_mps: float = field(default=1.0, metadata={"choices": tuple(CMD_PERIODIC)})
    clock_stretching: bool = False
    heater: bool = False
    crc_retries: int = 2

    def validate(self, where: str) -> None:
        check_option_fields(self, where)
        if not 0 <= self.crc_retries <= 10:
            raise OptionError(where, "crc_retries", f"must be 0..10 (got {self.crc_retries})")


class SHT3x(Sensor):
    """Sensirion SHT3x: temperature (°C), humidity (%RH)."""

    name = "sht3x"
    Options = SHT3xOptions
    default_address = 0x44
    addresses = (0x44, 0x45)

    def __init__(self, bus: Any, address: int | None = None, options: Any = None) -> None:
        super().__init__(bus, address, options)
        self.options.validate(self.name)
        self.channels = ("temperature", "humidity")
        self.units = {"temperature": "°C", "humidity": "%RH"}
        self.crc_errors = 0      # CRC mismatches seen (each one repeated the measurement)
        self.stale_reads = 0     # periodic mode: reads answered with the previous result (no new data yet)
        self._last: dict[str, float] | None = None
        self._ready = False

    # ---------------------------------------------------------------- commands

    def command(self, cmd: int, *, retries: int | None = None) -> None:
        self.bus.write_bytes(self.address, command_bytes(cmd), retries=retries)

    def _read_words(self, n: int, *, retries: int | None = None) -> list[int]:
        data = self.bus.read_bytes(self.address, 3 * n, retries=retries)
        try:
            return check_words(data)
        except ValueError as exc:
            self.crc_errors += 1
            raise DataError(f"{self.where}: {exc}") from None

    def read_status(self) -> int:
        """The 16-bit status register (CRC-checked)."""
        self.command(CMD_READ_STATUS)
        return self._read_words(1)[0]

    def status(self) -> dict[str, bool]:
        return {name: bool(value) for name, value in STATUS.decode(self.read_status()).items()}

    def read_serial(self) -> int:
        self.command(CMD_READ_SERIAL)
        hi, lo = self._read_words(2)
        return (hi << 16) | lo

    def set_heater(self, on: bool) -> None:
        self.command(CMD_HEATER_ON if on else CMD_HEATER_OFF)

    # ---------------------------------------------------------------- set-up and reading

    def setup(self) -> None:
        o: SHT3xOptions = self.options
        try:
            self.command(CMD_BREAK)          # leaves periodic mode, if a previous run left it there
        except BusError as exc:
            raise self._missing(exc) from None
        time.sleep(0.001)
        self.command(CMD_SOFT_RESET)
        time.sleep(SOFT_RESET_S)
        try:
            status = self.read_status()
        except DataError as exc:
            raise SensorError(f"{self.where}: the status register fails its CRC ({exc}); not an SHT3x, or a "
                              "noisy bus") from None
        except BusError as exc:
            raise SensorError(f"{self.where}: no answer to the status command ({exc}); not an SHT3x?") from None
        if status & STATUS_COMMAND_FAILED:
            raise SensorError(f"{self.where}: status {status:#06x} says the last command failed; not an SHT3x?")
        self.command(CMD_CLEAR_STATUS)
        self.set_heater(o.heater)
        if o.mode == "periodic":
            self.command(CMD_PERIODIC[o.periodic_mps][o.repeatability])
            time.sleep(MEASUREMENT_S[o.repeatability])
        self._last = None
        self._ready = True

    def _measure_single(self) -> list[int]:
        o: SHT3xOptions = self.options
        table = CMD_SINGLE_STRETCH if o.clock_stretching else CMD_SINGLE
        self.command(table[o.repeatability])
        if not o.clock_stretching:
            time.sleep(MEASUREMENT_S[o.repeatability])   # a read before the end is NACKed (and retried)
        return self._read_words(2)

    def _fetch_periodic(self) -> list[int] | None:
        """The newest periodic result, or ``None`` when the chip has none yet (it NACKs the read)."""
        self.command(CMD_FETCH)
        try:
            return self._read_words(2, retries=0)
        except DataError:
            raise
        except BusError as exc:
            if exc.errno == 121 and self._last is not None:
                return None
            time.sleep(1.0 / self.options.periodic_mps)
            self.command(CMD_FETCH)
            return self._read_words(2)

    def read(self) -> dict[str, float]:
        if not self._ready:
            raise SensorError(f"{self.where}: read() before setup()")
        o: SHT3xOptions = self.options
        attempts = 0
        while True:
            try:
                words = self._measure_single() if o.mode == "single" else self._fetch_periodic()
                break
            except DataError:
                attempts += 1
                if attempts > o.crc_retries:
                    raise
        if words is None:
            self.stale_reads += 1
            assert self._last is not None
            return dict(self._last)
        t_raw, rh_raw = words
        self._last = {"temperature": temperature_to_si(t_raw), "humidity": humidity_to_si(rh_raw)}
        return dict(self._last)
