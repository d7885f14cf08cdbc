"""The simulated MPU-6050: its register map (the driver's declaration), DLPF, ranges and divider, and the
physics of a real part (PS-MPU-6000A-00 rev 3.4, tables 6.1 and 6.2):

* gravity: 1 g (the reaction to it, pointing up) along the mounting orientation, added to the
  body motion the signal holds (recordings are gravity-free);
* zero-g offset: ±50 mg on X and Y, ±80 mg on Z (typical), drawn once per chip from its seed;
* accelerometer noise: 400 µg/√Hz over the configured DLPF bandwidth;
* gyroscope zero-rate offset: ±20 °/s (typical, 25 °C), drawn once per chip;
* gyroscope noise: 0.005 °/s/√Hz over the configured DLPF bandwidth.

``gravity``, ``offsets`` and ``noise`` (a scale) switch the terms off one by one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from device.sensors import mpu6050 as mpu
from device.sensors.sim.chip import RegisterDevice
from device.sensors.sim.physics import gravity_in_sensor_frame, orientation_matrix, uniform_within
from device.sensors.sim.signals import TWO_PI, Synthetic

ACCEL_NOISE_DENSITY_G = 400e-6               # g/√Hz
GYRO_NOISE_DENSITY_DPS = 0.005               # °/s/√Hz
ACCEL_ZERO_G_OFFSET_G = (0.050, 0.050, 0.080)  # typical, X Y Z
GYRO_ZERO_RATE_OFFSET_DPS = 20.0             # typical, every axis, at 25 °C
TEMPERATURE_NOISE_C = 0.02                   # not in the datasheet: a plausible wobble of the die sensor

ACCEL = ("accel_x", "accel_y", "accel_z")
GYRO = ("gyro_x", "gyro_y", "gyro_z")
R = mpu.REGISTERS
_CONFIG_REGISTERS = frozenset(R[name].address for name in ("SMPLRT_DIV", "CONFIG", "GYRO_CONFIG", "ACCEL_CONFIG"))
_SLEEP = (R.PWR_MGMT_1.address, R.PWR_MGMT_1["sleep"].mask)
_INT_STATUS, _DATA_RDY = R.INT_STATUS.address, R.INT_STATUS["data_rdy_int"].mask
_DATA, _DATA_END = R.DATA.address, R.DATA.address + R.DATA.size


def accel_noise_ms2(bandwidth_hz: float) -> float:
    """Accelerometer noise, 1 σ in m/s², over ``bandwidth_hz``: 400 µg/√Hz × √bandwidth."""
    return ACCEL_NOISE_DENSITY_G * mpu.STANDARD_GRAVITY * math.sqrt(bandwidth_hz)


def gyro_noise_rad_s(bandwidth_hz: float) -> float:
    """Gyroscope noise, 1 σ in rad/s, over ``bandwidth_hz``: 0.005 °/s/√Hz × √bandwidth."""
    return math.radians(GYRO_NOISE_DENSITY_DPS * math.sqrt(bandwidth_hz))


class SimMPU6050(RegisterDevice):
    """MPU-6050: asleep after power-up; ranges, DLPF and divider as configured; gravity along ``orientation``,
    the part's zero-g and zero-rate offsets, noise at the configured bandwidth."""

    kind = "mpu6050"
    driver = mpu.MPU6050
    regmap = mpu.REGISTERS
    channels = mpu.CHANNELS

    def __init__(self, *, orientation: Any = None, gravity: bool = True, offsets: bool = True,
                 **kwargs: Any) -> None:
        seed = int(kwargs.get("seed", 0))
        self.rotation = orientation_matrix(orientation, np.random.default_rng([seed, 1]))
        self.gravity = gravity_in_sensor_frame(self.rotation) if gravity else np.zeros(3)
        part = np.random.default_rng([seed, 2])      # this part's offsets: fixed for its lifetime
        accel_offset = uniform_within(part, ACCEL_ZERO_G_OFFSET_G) * mpu.STANDARD_GRAVITY
        gyro_offset = np.radians(uniform_within(part, [GYRO_ZERO_RATE_OFFSET_DPS] * 3))
        self.accel_offset = accel_offset if offsets else np.zeros(3)
        self.gyro_offset = gyro_offset if offsets else np.zeros(3)
        self.signal_path_resets = 0
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        """Body motion (no gravity: the chip adds it) and the die temperature."""
        funcs = {
            "accel_x": lambda t: 0.3 * math.sin(TWO_PI * 0.5 * t),
            "accel_y": lambda t: 0.2 * math.cos(TWO_PI * 0.5 * t),
            "accel_z": lambda t: 0.5 * math.sin(TWO_PI * 5.0 * t),
            "gyro_x": lambda t: 0.10 * math.sin(TWO_PI * 0.5 * t),
            "gyro_y": lambda t: -0.05 * math.cos(TWO_PI * 0.5 * t),
            "gyro_z": lambda t: 0.02,
            "temperature": lambda t: 30.0 + 0.5 * math.sin(TWO_PI * t / 600.0),
        }
        return Synthetic(funcs)

    def power_on_reset(self) -> None:
        super().power_on_reset()
        self._last_index = -1
        self._config: tuple[int, int, int, int] | None = None   # decoded on first use after a config write

    @property
    def asleep(self) -> bool:
        return bool(self.regs[_SLEEP[0]] & _SLEEP[1])

    def config(self) -> tuple[int, int, int, int]:
        """(dlpf, divider, accel range g, gyro range dps) as configured."""
        if self._config is None:
            self._config = (self.field("CONFIG", "dlpf_cfg"), self.field("SMPLRT_DIV", "divider"),
                            self.field("ACCEL_CONFIG", "afs_sel"), self.field("GYRO_CONFIG", "fs_sel"))
            self._sigma = self._noise_sigma()
        return self._config

    def bandwidth_hz(self) -> tuple[float, float]:
        """(accelerometer, gyroscope) bandwidth of the configured DLPF (7, reserved, counts as off)."""
        return mpu.DLPF_BANDWIDTH_HZ.get(self.config()[0], mpu.DLPF_BANDWIDTH_HZ[0])

    def noise_sigma(self) -> dict[str, float]:
        """1 σ of each channel's noise at the configured bandwidth (SI units)."""
        self.config()
        return self._sigma

    def _noise_sigma(self) -> dict[str, float]:
        bw_accel, bw_gyro = mpu.DLPF_BANDWIDTH_HZ.get(self.field("CONFIG", "dlpf_cfg"), mpu.DLPF_BANDWIDTH_HZ[0])
        return {**{c: accel_noise_ms2(bw_accel) for c in ACCEL}, **{c: gyro_noise_rad_s(bw_gyro) for c in GYRO},
                "temperature": TEMPERATURE_NOISE_C}

    def output_rate_hz(self) -> float:
        dlpf, div, _, _ = self.config()
        return self.rate_hz or mpu.sample_rate_hz(dlpf, div)

    def write_reg(self, reg: int, value: int) -> None:
        declared = R.covering(reg)
        if reg == R.PWR_MGMT_1.address:
            if R.PWR_MGMT_1.get(value, "device_reset"):
                self.power_on_reset()
                return
            self.regs[reg] = value & ~R.PWR_MGMT_1["device_reset"].mask & 0xFF
        elif reg == R.SIGNAL_PATH_RESET.address:
            # Resets the signal paths' ADCs and filters (register map 4.26): "this register does not clear
            # the sensor registers". The simulated signal path has no state to reset.
            if value & 0x07:
                self.signal_path_resets += 1
        elif declared is not None and declared.read_only:
            return
        else:
            self.regs[reg] = value & 0xFF
            if reg in _CONFIG_REGISTERS:
                self._config = None

    def read_reg(self, reg: int) -> int:
        value = self.regs[reg]
        if reg == _INT_STATUS:
            self.regs[reg] &= ~_DATA_RDY & 0xFF   # DATA_RDY_INT clears on read
        return value

    def before_read(self, pointer: int, n: int) -> None:
        if self.asleep or not (_INT_STATUS <= pointer < _DATA_END):
            return
        if self.advance == "per_read":
            if pointer == _DATA:
                self._sample()
        else:
            index = int((time.monotonic() - self._t0) * self.output_rate_hz())
            if index != self._last_index:
                self._last_index = index
                self._sample()

    def physical(self, body: dict[str, float]) -> dict[str, float]:
        """What the sensing elements see: body motion plus gravity and the part's offsets (no noise)."""
        out = dict(body)
        for i, c in enumerate(ACCEL):
            out[c] = body[c] + float(self.gravity[i]) + float(self.accel_offset[i])
        for i, c in enumerate(GYRO):
            out[c] = body[c] + float(self.gyro_offset[i])
        return out

    def _sample(self) -> None:
        if self.faults.frozen and self.samples_taken:
            return
        _, _, accel_g, gyro_dps = self.config()
        v = self.noisy(self.physical(self.next_values()), self.noise_sigma())
        raw = (mpu.accel_from_si(v["accel_x"], accel_g), mpu.accel_from_si(v["accel_y"], accel_g),
               mpu.accel_from_si(v["accel_z"], accel_g), mpu.temperature_from_si(v["temperature"]),
               mpu.gyro_from_si(v["gyro_x"], gyro_dps), mpu.gyro_from_si(v["gyro_y"], gyro_dps),
               mpu.gyro_from_si(v["gyro_z"], gyro_dps))
        self.regs[_DATA:_DATA_END] = mpu.encode_burst(*raw)
        self.regs[_INT_STATUS] |= _DATA_RDY
