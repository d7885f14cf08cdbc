"""The simulated BME280 / BMP280: register map (the driver's declaration), calibration NVM, forced and normal
modes, oversampling, the IIR filter, the status bits and measurement times, and the datasheet's noise.

Noise (BME280 datasheet section 3.5; the BMP280's use-case table 7 quotes the same figures in cm of
altitude): pressure RMS noise 3.3, 2.6, 2.1, 1.6, 1.3 Pa at x1, x2, x4, x8, x16 oversampling with the
filter off (the filter, simulated as the datasheet gives it, lowers it further); temperature 0.005 °C
and humidity 0.02 %RH at x1, falling with the square root of the oversampling.
"""

from __future__ import annotations

import math
import time
from typing import Any

from device.errors import BadInput
from device.sensors import bme280 as bme
from device.sensors.sim.chip import RegisterDevice
from device.sensors.sim.signals import TWO_PI, Synthetic

# A calibration set: the temperature/pressure words of the BMP280 datasheet's worked example,
# humidity words as read from a BME280 breakout.
DATASHEET_CALIBRATION = bme.Calibration(27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                                        75, 362, 0, 313, 50, 30)

PRESSURE_NOISE_PA = {1: 3.3, 2: 2.6, 4: 2.1, 8: 1.6, 16: 1.3}   # RMS, IIR filter off
TEMPERATURE_NOISE_C = 0.005                                      # RMS at x1
HUMIDITY_NOISE_RH = 0.02                                         # RMS at x1


def noise_sigma(osrs_t: int, osrs_p: int, osrs_h: int) -> dict[str, float]:
    """1 σ of each channel's noise for oversampling factors (0 = skipped)."""
    return {"temperature": TEMPERATURE_NOISE_C / math.sqrt(max(osrs_t, 1)),
            "pressure": PRESSURE_NOISE_PA[max(osrs_p, 1)],
            "humidity": HUMIDITY_NOISE_RH / math.sqrt(max(osrs_h, 1))}


class SimBME280(RegisterDevice):
    """BME280 (``chip="bme280"``) or BMP280 (``chip="bmp280"``)."""

    kind = "bme280"
    driver = bme.BME280

    def __init__(self, *, chip: str = "bme280", calibration: bme.Calibration = DATASHEET_CALIBRATION,
                 enforce_timing: bool = True, **kwargs: Any) -> None:
        if chip not in bme.REGISTERS:
            raise BadInput(f"simulated Bosch chip must be bme280 or bmp280 (got {chip!r})")
        self.kind = chip
        self.chip = chip
        self.driver = bme.BME280 if chip == "bme280" else bme.BMP280   # type: ignore[misc]
        self.regmap = bme.REGISTERS[chip]                              # type: ignore[misc]
        self.calibration = calibration
        self.enforce_timing = enforce_timing
        self.channels = ("temperature", "pressure", "humidity") if chip == "bme280" else ("temperature", "pressure")
        self.measurements = 0
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        funcs = {"temperature": lambda t: 21.0 + 2.0 * math.sin(TWO_PI * t / 3600.0) + 0.1 * math.sin(TWO_PI * t / 7.0),
                 "pressure": lambda t: 101325.0 + 60.0 * math.sin(TWO_PI * t / 7200.0),
                 "humidity": lambda t: 45.0 + 5.0 * math.sin(TWO_PI * t / 1800.0)}
        if self.chip == "bmp280":
            funcs.pop("humidity")
        return Synthetic(funcs)

    def power_on_reset(self) -> None:
        super().power_on_reset()
        regs = self.regmap
        assert regs is not None
        block1, block2 = bme.encode_calibration(self.calibration)
        self.regs[regs.CALIB_00.address:regs.CALIB_00.address + regs.CALIB_00.size] = block1[:regs.CALIB_00.size]
        if "CALIB_26" in regs:
            self.regs[regs.CALIB_26.address:regs.CALIB_26.address + regs.CALIB_26.size] = block2
        skipped_h = bme.SKIPPED_16BIT if self.chip == "bme280" else None
        data = bme.encode_data(bme.SKIPPED_20BIT, bme.SKIPPED_20BIT, skipped_h)
        self.regs[regs.DATA.address:regs.DATA.address + len(data)] = data
        self._hum_code = 0           # ctrl_hum as latched by the last ctrl_meas write
        self._iir: dict[str, float] = {}
        self._im_update_until = time.monotonic() + 0.0005
        self._measuring_until = 0.0
        self._pending: bytes | None = None   # a forced measurement's result, in the registers when it is done
        self._next_due = 0.0
        self._decoded: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        """ctrl_meas and config decoded (mode, osrs_t, osrs_p, t_sb, filter), cached until the next write."""
        if self._decoded is None:
            regs = self.regmap
            assert regs is not None
            ctrl, config = regs.CTRL_MEAS, regs.CONFIG
            self._decoded = {**ctrl.decode(self.regs[ctrl.address]), **config.decode(self.regs[config.address])}
        return self._decoded

    # configuration ------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.settings()["mode"])

    def _osrs(self) -> tuple[int, int, int]:
        h = bme.oversampling_factor(self._hum_code) if self.chip == "bme280" else 0
        s = self.settings()
        return s["osrs_t"], s["osrs_p"], h

    def _cycle_s(self) -> float:
        t, p, h = self._osrs()
        cycle_s: float = (bme.measurement_time_ms(t, p, h) + self.settings()["t_sb"]) / 1000.0
        return cycle_s

    def output_rate_hz(self) -> float:
        if self.rate_hz:
            return self.rate_hz
        return 1.0 / self._cycle_s() if self.mode == "normal" else 50.0

    def write_reg(self, reg: int, value: int) -> None:
        regs = self.regmap
        assert regs is not None
        target = regs.at(reg)
        if target is None or target.read_only:
            return               # calibration, id, status and data are read-only; nothing else is there
        if target.name == "RESET":
            if value == bme.RESET_WORD:
                self.power_on_reset()
            return
        writable = sum(f.mask for f in target.fields)
        self._decoded = None
        if target.name == "CONFIG":
            if self.mode != "normal":      # "writes to the config register in normal mode may be ignored"
                self.regs[reg] = value & writable
        elif target.name == "CTRL_MEAS":
            self.regs[reg] = value & writable
            self._hum_code = self.regs[regs.CTRL_HUM.address] if "CTRL_HUM" in regs else 0
            mode = self.mode
            if mode == "forced":
                self._measure(forced=True)             # forced mode returns to sleep when done
            elif mode == "normal":
                self._next_due = 0.0
        else:
            self.regs[reg] = value & writable

    def _sleep(self) -> None:
        ctrl = self.regmap.CTRL_MEAS                   # type: ignore[union-attr]
        self.regs[ctrl.address] = ctrl.encode(self.regs[ctrl.address], mode="sleep")
        self._decoded = None

    def _settle(self) -> None:
        if self._pending is not None and time.monotonic() >= self._measuring_until:
            self.regs[bme.REG_DATA:bme.REG_DATA + len(self._pending)] = self._pending
            self._pending = None
            self._sleep()

    def read_reg(self, reg: int) -> int:
        self._settle()
        if reg == bme.REG_STATUS:
            now = time.monotonic()
            return bme.REGISTERS_BME280.STATUS.encode(measuring=int(now < self._measuring_until),
                                                      im_update=int(now < self._im_update_until))
        return self.regs[reg]

    def before_read(self, pointer: int, n: int) -> None:
        self._settle()
        if self.mode != "normal" or not (bme.REG_DATA <= pointer <= 0xFE):
            return
        if self.advance == "per_read":
            if pointer == bme.REG_DATA:
                self._measure()
        else:
            now = time.monotonic()
            if now >= self._next_due:
                self._measure()
                self._next_due = now + self._cycle_s()

    # a measurement ------------------------------------------------------------------------
    def _measure(self, forced: bool = False) -> None:
        """One measurement; a forced one lands in the data registers after its typical duration."""
        if self.faults.frozen and self.measurements:
            if forced:
                self._sleep()
            return     # frozen: the data registers keep the last result
        self.measurements += 1
        osrs_t, osrs_p, osrs_h = self._osrs()
        values = self.noisy(self.next_values(), noise_sigma(osrs_t, osrs_p, osrs_h))
        cal = self.calibration
        coef = self.settings()["filter"]
        if osrs_t:
            adc_t = self._filtered("t", bme.encode_temperature(values["temperature"], cal), coef, osrs_t)
            t_fine = bme.t_fine_int(adc_t, cal)
        else:
            adc_t, t_fine = bme.SKIPPED_20BIT, bme.t_fine_int(bme.encode_temperature(values["temperature"], cal), cal)
        adc_p = bme.SKIPPED_20BIT
        if osrs_p:
            adc_p = self._filtered("p", bme.encode_pressure(values["pressure"], t_fine, cal), coef, osrs_p)
        adc_h = None
        if self.chip == "bme280":
            adc_h = bme.encode_humidity(values["humidity"], t_fine, cal) if osrs_h else bme.SKIPPED_16BIT
        data = bme.encode_data(adc_p, adc_t, adc_h)
        if forced and self.enforce_timing:
            # typical duration: 1 + 2*osrs_t + (2*osrs_p + 0.5) + (2*osrs_h + 0.5) ms (appendix B)
            typical_ms = (1.0 + 2.0 * osrs_t + (2.0 * osrs_p + 0.5 if osrs_p else 0.0)
                          + (2.0 * osrs_h + 0.5 if osrs_h else 0.0))
            self._pending = data
            self._measuring_until = time.monotonic() + typical_ms / 1000.0
            return
        self.regs[bme.REG_DATA:bme.REG_DATA + len(data)] = data
        self._measuring_until = 0.0
        if forced:
            self._sleep()

    def _filtered(self, key: str, adc: int, coef: int, osrs: int) -> int:
        """The IIR filter (datasheet 3.4.4) and the output resolution (16 bit + oversampling, 20 bit filtered)."""
        if coef:
            prev = self._iir.get(key, float(adc))
            value = (prev * (coef - 1) + adc) / coef
            self._iir[key] = value
            return int(value)
        self._iir.pop(key, None)
        bits = 16 + int(math.log2(osrs))
        return adc & ~((1 << (20 - bits)) - 1) if bits < 20 else adc
