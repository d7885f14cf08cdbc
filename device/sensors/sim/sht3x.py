"""The simulated SHT3x: 16-bit commands, single-shot (NACK until done, or clock stretching) and periodic
modes, heater, status register (0x8010 after a reset) and serial number, CRC on every word.

Noise (SHT3x-DIS datasheet tables 1 and 2): the repeatability, which the datasheet states as 3 σ of
consecutive measurements: 0.04 / 0.08 / 0.15 °C and 0.08 / 0.15 / 0.21 %RH at high / medium / low.
"""

from __future__ import annotations

import math
import time
from typing import Any

from device.sensors import sht3x as sht
from device.sensors.sim.chip import SimDevice, nack
from device.sensors.sim.signals import TWO_PI, Synthetic

REPEATABILITY_C = {"high": 0.04, "medium": 0.08, "low": 0.15}      # 3 σ
REPEATABILITY_RH = {"high": 0.08, "medium": 0.15, "low": 0.21}     # 3 σ


def noise_sigma(repeatability: str) -> dict[str, float]:
    """1 σ of each channel's noise: a third of the datasheet's repeatability."""
    return {"temperature": REPEATABILITY_C[repeatability] / 3.0, "humidity": REPEATABILITY_RH[repeatability] / 3.0}


class SimSHT3x(SimDevice):
    """SHT3x: 16-bit commands, single-shot (NACK until done, or clock stretching) and periodic modes,
    heater, status and serial number, CRC on every word. ``enforce_timing=False`` makes results
    ready at once (for tests that must not sleep)."""

    kind = "sht3x"
    driver = sht.SHT3x
    channels = ("temperature", "humidity")
    HEATER_DELTA_C = 3.0

    def __init__(self, *, serial: int = 0x1A2B3C4D, enforce_timing: bool = True, **kwargs: Any) -> None:
        self.serial = serial
        self.enforce_timing = enforce_timing
        self._last_data: bytes | None = None
        self.commands: list[int] = []
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        return Synthetic({"temperature": lambda t: 22.0 + 0.5 * math.sin(TWO_PI * t / 600.0),
                          "humidity": lambda t: 40.0 + 3.0 * math.sin(TWO_PI * t / 900.0)})

    def power_on_reset(self) -> None:
        self.status = sht.STATUS.reset     # 0x8010: an alert pending, a reset detected
        self.periodic: tuple[float, str] | None = None
        self._periodic_t0 = 0.0
        self._fetched = -1
        self._pending: tuple[float, bool, bytes] | None = None   # (ready_at, stretch, data)
        self._out: bytes | None = None

    def output_rate_hz(self) -> float:
        return self.rate_hz or (self.periodic[0] if self.periodic else 1.0)

    def _measurement(self, repeatability: str) -> bytes:
        if self.faults.frozen and self._last_data is not None:
            return self._last_data
        v = self.noisy(self.next_values(), noise_sigma(repeatability))
        t, rh = v["temperature"], v["humidity"]
        if self.status & sht.STATUS_HEATER:
            t_new = t + self.HEATER_DELTA_C
            # same absolute humidity at a higher temperature: RH falls with the saturation pressure (Magnus)
            rh = rh * math.exp(17.62 * t / (243.12 + t)) / math.exp(17.62 * t_new / (243.12 + t_new))
            t = t_new
        data = bytearray(sht.word_with_crc(sht.temperature_from_si(t)) + sht.word_with_crc(sht.humidity_from_si(rh)))
        if self.faults.corrupt_crc and self._fault_rng.random() < self.faults.corrupt_crc:
            data[2 if self._fault_rng.random() < 0.5 else 5] ^= 0x01 << self._fault_rng.randrange(8)
        self._last_data = bytes(data)
        return self._last_data

    def on_write(self, data: bytes) -> None:
        if len(data) < 2:
            raise nack("incomplete command")
        cmd = (data[0] << 8) | data[1]
        self.commands.append(cmd)
        now = time.monotonic()
        if self.periodic and cmd not in (sht.CMD_FETCH, sht.CMD_BREAK, sht.CMD_SOFT_RESET, sht.CMD_ART):
            self.status |= sht.STATUS_COMMAND_FAILED
            raise nack(f"command {cmd:#06x} refused in periodic mode")
        self.status &= ~sht.STATUS_COMMAND_FAILED
        single = {**{v: (k, True) for k, v in sht.CMD_SINGLE_STRETCH.items()},
                  **{v: (k, False) for k, v in sht.CMD_SINGLE.items()}}
        periodic = {code: (mps, rep) for mps, table in sht.CMD_PERIODIC.items() for rep, code in table.items()}
        if cmd in single:
            rep, stretch = single[cmd]
            ready = now + (sht.MEASUREMENT_S[rep] * 0.8 if self.enforce_timing else 0.0)
            self._pending = (ready, stretch, self._measurement(rep))
        elif cmd in periodic or cmd == sht.CMD_ART:
            self.periodic = periodic.get(cmd, (4.0, "high"))
            self._periodic_t0 = now
            self._fetched = -1
        elif cmd == sht.CMD_FETCH:
            if not self.periodic:
                self._out = None
                return
            mps, rep = self.periodic
            if self.advance == "per_read" and not self.enforce_timing:
                self._out = self._measurement(rep)
                return
            index = int((now - self._periodic_t0) * mps) - 1   # the first result comes after one period
            if index > self._fetched:
                self._fetched = index
                self._out = self._measurement(rep)
            else:
                self._out = None    # no new data: the read header will be NACKed
        elif cmd == sht.CMD_BREAK:
            self.periodic = None
        elif cmd == sht.CMD_SOFT_RESET:
            self.power_on_reset()
        elif cmd == sht.CMD_HEATER_ON:
            self.status |= sht.STATUS_HEATER
        elif cmd == sht.CMD_HEATER_OFF:
            self.status &= ~sht.STATUS_HEATER
        elif cmd == sht.CMD_READ_STATUS:
            self._out = sht.word_with_crc(self.status)
        elif cmd == sht.CMD_CLEAR_STATUS:
            self.status &= ~sht.STATUS_CLEARED_BY_CLEAR
        elif cmd == sht.CMD_READ_SERIAL:
            self._out = sht.word_with_crc(self.serial >> 16) + sht.word_with_crc(self.serial & 0xFFFF)
        else:
            self.status |= sht.STATUS_COMMAND_FAILED
            raise nack(f"unknown command {cmd:#06x}")

    def on_read(self, n: int) -> bytes:
        if self._pending is not None:
            ready_at, stretch, data = self._pending
            wait = ready_at - time.monotonic()
            if wait > 0:
                if not stretch:
                    raise nack("measurement in progress")
                time.sleep(wait)     # clock stretching: the chip holds SCL low until it is done
            self._pending = None
            return (data + b"\xff" * n)[:n]
        if self._out is not None:
            data, self._out = self._out, None
            return (data + b"\xff" * n)[:n]
        raise nack("no data to read")
