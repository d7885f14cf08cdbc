"""The simulated ADS1115: pointer register, 16-bit big-endian registers (the driver's declaration), single-shot
conversions that take 1/DR (OS reads 0 meanwhile), continuous mode, the MUX, PGA and data rate, and noise that
grows with the data rate.

Noise: input-referred, about 30 µV RMS at 860 SPS (±2.048 V; SBAS444 "noise vs data rate", as TI's
applications engineers read it off the figure) and falling with √(data rate) below that (a ΔΣ converter
averages more modulator samples per result), so that at 128 SPS and below it stays under one LSB on most
ranges, as the datasheet's noise table shows; the 16-bit quantization is the chip's own.
"""

from __future__ import annotations

import math
import time
from typing import Any

from device.sensors import ads1115 as ads
from device.sensors.sim.chip import SimDevice, nack
from device.sensors.sim.signals import TWO_PI, Synthetic

NOISE_AT_860_SPS_V = 30e-6
R = ads.REGISTERS


def noise_sigma_v(data_rate_sps: int) -> float:
    """1 σ of the conversion noise (V) at ``data_rate_sps``."""
    return NOISE_AT_860_SPS_V * math.sqrt(data_rate_sps / 860.0)


class SimADS1115(SimDevice):
    """ADS1115: inputs ``ain0``..``ain3`` in volts; a conversion of the selected MUX pair, plus noise, quantized."""

    kind = "ads1115"
    driver = ads.ADS1115
    channels = ("ain0", "ain1", "ain2", "ain3")

    def __init__(self, *, enforce_timing: bool = True, **kwargs: Any) -> None:
        self.enforce_timing = enforce_timing
        self.conversions = 0
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        return Synthetic({"ain0": lambda t: 1.65 + 1.0 * math.sin(TWO_PI * 1.0 * t),
                          "ain1": lambda t: 0.5 + 0.25 * math.sin(TWO_PI * 0.1 * t),
                          "ain2": lambda t: 2.5,
                          "ain3": lambda t: 3.3 * ((t / 10.0) % 1.0)})

    def power_on_reset(self) -> None:
        self.regs = {reg.address: reg.reset for reg in R}
        self.regs[R.CONFIG.address] = R.CONFIG.encode(R.CONFIG.reset, os=0)   # OS reads 1 when idle (on_read)
        self.pointer = 0
        self._done_at = 0.0
        self._pending_code: int | None = None
        self._round: set[int] = set()
        self._values: dict[str, float] | None = None
        self._last_index = -1
        self._frozen_codes: dict[int, int] = {}

    def config(self) -> dict[str, Any]:
        """The config register by meaning: channel, full_scale_v, mode, data_rate."""
        return ads.CONFIG_MEANING.decode(self.regs[R.CONFIG.address])

    def output_rate_hz(self) -> float:
        return self.rate_hz or float(self.config()["data_rate"])

    def _code(self, mux: int) -> int:
        cfg = self.config()
        if self.faults.frozen and mux in self._frozen_codes:
            return self._frozen_codes[mux]
        if self.advance == "per_read":
            if self._values is None or mux in self._round:   # a new round of conversions: the next sample
                self._values = self.next_values()
                self._round = set()
            self._round.add(mux)
        else:
            self._values = self.next_values()
        pos, neg = ads.MUX_INPUTS[mux]
        volts = self._values[f"ain{pos}"] - (self._values[f"ain{neg}"] if neg is not None else 0.0)
        volts = self.noisy({"v": volts}, {"v": noise_sigma_v(cfg["data_rate"])})["v"]
        self.conversions += 1
        code = ads.volts_to_code(volts, cfg["full_scale_v"]) & 0xFFFF
        self._frozen_codes[mux] = code
        return code

    def _settle(self) -> None:
        if self._pending_code is not None and time.monotonic() >= self._done_at:
            self.regs[R.CONVERSION.address] = self._pending_code
            self._pending_code = None

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] & 0x03
        if data[0] & 0xFC:
            raise nack(f"pointer byte {data[0]:#04x} has reserved bits set")
        if len(data) < 3:
            return
        value = R.CONFIG.from_bytes(data[1:3])
        target = R.at(self.pointer)
        if target is None or target.read_only:
            return
        if target is not R.CONFIG:
            self.regs[self.pointer] = value
            return
        self._settle()
        self.regs[R.CONFIG.address] = R.CONFIG.encode(value, os=0)
        fields = R.CONFIG.decode(value)
        continuous = not fields["mode"]
        if continuous:
            self._last_index = -1
        elif fields["os"]:
            self._pending_code = self._code(fields["mux"])
            dr = self.config()["data_rate"]
            self._done_at = time.monotonic() + (1.0 / dr if self.enforce_timing else 0.0)
            self._settle()

    def on_read(self, n: int) -> bytes:
        self._settle()
        cfg = self.regs[R.CONFIG.address]
        if self.pointer == R.CONFIG.address:
            word = R.CONFIG.encode(cfg, os=int(self._pending_code is None))   # OS reads 0 while converting
        elif self.pointer == R.CONVERSION.address:
            if not R.CONFIG.get(cfg, "mode"):   # continuous: a fresh conversion per read or per 1/DR
                mux = R.CONFIG.get(cfg, "mux")
                if self.advance == "per_read":
                    self.regs[R.CONVERSION.address] = self._code(mux)
                else:
                    index = int((time.monotonic() - self._t0) * self.output_rate_hz())
                    if index != self._last_index:
                        self._last_index = index
                        self.regs[R.CONVERSION.address] = self._code(mux)
            word = self.regs[R.CONVERSION.address]
        else:
            word = self.regs[self.pointer]
        pair = R.CONFIG.to_bytes(word)
        return (pair * ((n + 1) // 2))[:n]
