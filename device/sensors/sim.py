"""A simulated I2C bus with register-level simulated chips, replay of recordings and fault injection.

:class:`SimBus` has the methods of ``smbus2.SMBus`` (``read_byte_data``, ``read_i2c_block_data``,
``write_byte_data``, ``i2c_rdwr`` with ``smbus2.i2c_msg`` ...), so drivers, ours or anybody's,
run on it unchanged. Every SMBus call is turned into what goes over the wire: a transaction of
write segments and read segments to one address, then a STOP. The simulated chips
(:class:`SimBME280`, :class:`SimMPU6050`, :class:`SimSHT3x`, :class:`SimADS1115`) serve their
real register maps: ids, calibration, configuration writes that change behaviour (ranges,
oversampling, IIR filter, DLPF, PGA, data rate, heater, modes), and data registers that hold a
physically plausible signal, or a recording encoded back to raw counts through the inverse of the
datasheet maths.

How a chip's signal advances (``advance``):

* ``"per_read"`` (default, deterministic): every new result the chip produces (a forced or
  single-shot measurement, an ADC conversion round, a burst read of the data registers in
  continuous modes) takes the next sample of the recording; a sampler reading at the recording's
  rate walks through it at that rate. Synthetic signals are evaluated at ``k / rate``.
* ``"time"``: the sample index follows ``time.monotonic()`` since the chip was created, at the
  recording's sample rate (or the chip's configured output rate for synthetic signals).

Recordings loop at their end. Faults: :class:`BusFaults` on the bus (NACK with probability ``p``
as ``OSError(121)``, a stuck bus as ``OSError(110)`` until it frees, a device unplugged and
plugged back in with its registers at power-on values), :class:`DeviceFaults` on a chip (data
frozen, SHT3x CRC bytes corrupted with probability ``p``).
"""

from __future__ import annotations

import csv
import ctypes
import errno
import io
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput
from device.sensors import ads1115 as ads
from device.sensors import bme280 as bme
from device.sensors import mpu6050 as mpu
from device.sensors import sht3x as sht

I2C_M_RD = 0x0001
TWO_PI = 2.0 * math.pi


def _nack(what: str = "") -> OSError:
    return OSError(errno.EREMOTEIO, "Remote I/O error" + (f" ({what})" if what else ""))


# --------------------------------------------------------------------------------------------
# Signals: synthetic functions of time, recordings


class Synthetic:
    """A plausible signal: ``{channel: f(t)}`` plus white noise of ``noise[channel]`` (1 sigma, SI)."""

    rate_hz: float | None = None

    def __init__(self, funcs: dict[str, Callable[[float], float]], noise: dict[str, float] | None = None) -> None:
        self.funcs = dict(funcs)
        self.noise = dict(noise or {})
        self.channels = tuple(self.funcs)

    def values(self, k: int, t: float) -> dict[str, float]:
        return {c: f(t) for c, f in self.funcs.items()}


class Recording:
    """Samples in SI units, ``data[i, j]`` = channel ``channels[j]`` at sample ``i``, at ``rate_hz``."""

    noise: dict[str, float] = {}  # noqa: RUF012 - a recording is replayed exactly

    def __init__(self, channels: tuple[str, ...], data: np.ndarray, rate_hz: float, source: str = "<arrays>") -> None:
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(channels) or data.shape[0] == 0:
            raise BadInput(f"{source}: a recording needs rows of {len(channels)} values, got shape {data.shape}")
        if not np.all(np.isfinite(data)):
            row = int(np.argwhere(~np.isfinite(data))[0][0])
            raise BadInput(f"{source}: sample {row} holds a non-finite value")
        if not (rate_hz and rate_hz > 0 and math.isfinite(rate_hz)):
            raise BadInput(f"{source}: sample rate {rate_hz!r} must be a positive number of Hz")
        self.channels = tuple(channels)
        self.data = data
        self.rate_hz = float(rate_hz)
        self.source = source
        self._rows = [dict(zip(self.channels, row, strict=True)) for row in data.tolist()]

    def __len__(self) -> int:
        return len(self._rows)

    def values(self, k: int, t: float) -> dict[str, float]:
        return self._rows[k % len(self._rows)]

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], rate_hz: float, source: str = "<arrays>") -> Recording:
        names = tuple(arrays)
        try:
            columns = [np.asarray(arrays[n], dtype=np.float64).reshape(-1) for n in names]
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{source}: channels must be arrays of numbers ({exc})") from None
        if len({len(c) for c in columns}) > 1:
            raise BadInput(f"{source}: recording channels have different lengths: {[len(c) for c in columns]}")
        return cls(names, np.stack(columns, axis=1) if columns else np.empty((0, 0)), rate_hz, source)

    @classmethod
    def load(cls, path: str | Path, rate_hz: float | None = None) -> Recording:
        """Load a ``.csv`` (a ``# sample_rate_hz=N`` comment line or a ``time_s`` column gives the rate)
        or a ``.npz`` (one array per channel, optionally ``sample_rate_hz``)."""
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"recording {path} does not exist")
        if path.suffix == ".npz":
            return cls._load_npz(path, rate_hz)
        return cls._load_csv(path, rate_hz)

    @classmethod
    def _load_npz(cls, path: Path, rate_hz: float | None) -> Recording:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BadInput(f"recording {path}: not a readable .npz ({exc})") from None
        rate = arrays.pop("sample_rate_hz", None)
        if rate_hz is None and rate is not None:
            if np.size(rate) != 1 or rate.dtype.kind not in "iuf":
                raise BadInput(f"recording {path}: 'sample_rate_hz' must be one number, got {rate.dtype.name} "
                               f"shape {list(rate.shape)}")
            rate_hz = float(rate.reshape(-1)[0])
        if rate_hz is None:
            raise BadInput(f"recording {path}: no sample rate; store a 'sample_rate_hz' array or pass one")
        return cls.from_arrays(arrays, rate_hz, str(path))

    @classmethod
    def _load_csv(cls, path: Path, rate_hz: float | None) -> Recording:
        declared: float | None = None
        rows: list[list[str]] = []
        header: list[str] | None = None
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"recording {path}: not a readable UTF-8 CSV file ({exc})") from None
        for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not row or not "".join(row).strip():
                continue
            first = row[0].strip()
            if first.startswith("#"):
                comment = ",".join(row).lstrip("#").strip()
                key, _, value = comment.replace(":", "=").partition("=")
                if key.strip() in ("sample_rate_hz", "rate_hz", "sample_rate"):
                    try:
                        declared = float(value)
                    except ValueError:
                        raise BadInput(f"{path}:{lineno}: sample rate {value.strip()!r} is not a number") from None
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                raise BadInput(f"{path}:{lineno}: {len(row)} values, the header has {len(header)} columns")
            rows.append(row)
        if header is None or not rows:
            raise BadInput(f"recording {path} has no header line of channel names and no samples")
        try:
            data = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
        except ValueError as exc:
            raise BadInput(f"recording {path}: {exc}") from None
        time_cols = [i for i, name in enumerate(header) if name in ("time_s", "t", "time")]
        if time_cols:
            times = data[:, time_cols[0]]
            if declared is None and rate_hz is None and len(times) > 1:
                step = float(np.median(np.diff(times)))
                if step <= 0:
                    raise BadInput(f"recording {path}: the time column does not increase")
                declared = 1.0 / step
            data = np.delete(data, time_cols[0], axis=1)
            header = [h for i, h in enumerate(header) if i != time_cols[0]]
        rate = rate_hz or declared
        if rate is None:
            raise BadInput(f"recording {path}: no sample rate; add a '# sample_rate_hz=100' line or a time_s column")
        return cls(tuple(header), data, rate, str(path))


class _Merged:
    """A recording for some channels, a synthetic signal for the rest."""

    def __init__(self, primary: Recording, fallback: Synthetic) -> None:
        self.primary, self.fallback = primary, fallback
        self.rate_hz = primary.rate_hz
        self.noise = {c: n for c, n in fallback.noise.items() if c not in primary.channels}

    def values(self, k: int, t: float) -> dict[str, float]:
        out = self.fallback.values(k, t)
        out.update(self.primary.values(k, t))
        return out


# --------------------------------------------------------------------------------------------
# Faults


@dataclass
class BusFaults:
    """Bus-wide faults: every transaction is NACKed (OSError 121) with probability ``nack_probability``."""

    nack_probability: float = 0.0
    seed: int | None = 0


@dataclass
class DeviceFaults:
    """Per-chip faults: ``frozen`` data (the chip repeats its last result), ``corrupt_crc`` probability
    (SHT3x: a CRC byte of a measurement is flipped)."""

    frozen: bool = False
    corrupt_crc: float = 0.0


# --------------------------------------------------------------------------------------------
# Simulated chips


class SimDevice:
    """A chip on the simulated bus: it sees write segments, read segments and the STOP."""

    kind = "device"
    default_address = 0x00
    channels: tuple[str, ...] = ()

    def __init__(self, *, source: Recording | Synthetic | None = None, advance: str = "per_read",
                 rate_hz: float | None = None, noise: float = 1.0, seed: int = 0) -> None:
        if advance not in ("per_read", "time"):
            raise BadInput(f"simulated {self.kind}: advance must be 'per_read' or 'time' (got {advance!r})")
        synthetic = self.default_signal()
        if isinstance(source, Recording):
            unknown = [c for c in source.channels if c not in self.channels]
            if unknown:
                raise BadInput(f"recording {source.source}: channel {unknown[0]!r} is not one of the {self.kind}'s "
                               f"channels ({', '.join(self.channels)})")
            source = _Merged(source, synthetic)  # type: ignore[assignment]
        self.source: Any = source or synthetic
        self.advance = advance
        self.rate_hz = rate_hz
        self.noise_scale = noise
        self.faults = DeviceFaults()
        self._rng = np.random.default_rng(seed)
        self._fault_rng = random.Random(seed + 1)
        self._t0 = time.monotonic()
        self._k = -1
        self._last: dict[str, float] | None = None
        self.samples_taken = 0
        self.power_on_reset()

    # subclasses ---------------------------------------------------------------------------
    def default_signal(self) -> Synthetic:
        return Synthetic({})

    def power_on_reset(self) -> None:
        """Everything as after power-up."""

    def output_rate_hz(self) -> float:
        """The chip's configured output data rate (for time-based advance of synthetic signals)."""
        return self.rate_hz or 1.0

    def quick(self) -> None:
        """Answer an SMBus quick command (an address-only transaction): an ACK."""

    def on_write(self, data: bytes) -> None:
        raise NotImplementedError

    def on_read(self, n: int) -> bytes:
        raise NotImplementedError

    def on_stop(self) -> None:
        """The STOP condition ends a transaction."""

    # the signal ---------------------------------------------------------------------------
    def next_values(self) -> dict[str, float]:
        """The signal for the chip's next result, without noise (the chip adds its own)."""
        if self.faults.frozen and self._last is not None:
            return self._last
        rate = self.source.rate_hz or self.rate_hz or self.output_rate_hz()
        if self.advance == "per_read":
            self._k += 1
            k, t = self._k, self._k / rate
        else:
            t = time.monotonic() - self._t0
            k = int(t * rate)
        self._last = dict(self.source.values(k, t))
        self.samples_taken += 1
        return self._last

    def noisy(self, values: dict[str, float], factor: dict[str, float] | float = 1.0) -> dict[str, float]:
        if self.noise_scale == 0 or not self.source.noise:
            return dict(values)
        out = dict(values)
        for c, sigma in self.source.noise.items():
            if c in out:
                f = factor.get(c, 1.0) if isinstance(factor, dict) else factor
                out[c] += float(self._rng.normal(0.0, sigma * f * self.noise_scale))
        return out


class RegisterDevice(SimDevice):
    """A chip with an 8-bit register pointer: a write sets the pointer and writes on from there,
    a read reads on from the pointer (auto-increment)."""

    def power_on_reset(self) -> None:
        self.regs = bytearray(256)
        self.pointer = 0

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0]
        for value in data[1:]:
            self.write_reg(self.pointer, value)
            self.pointer = (self.pointer + 1) & 0xFF

    def on_read(self, n: int) -> bytes:
        self.before_read(self.pointer, n)
        out = bytearray()
        for _ in range(n):
            out.append(self.read_reg(self.pointer))
            self.pointer = (self.pointer + 1) & 0xFF
        return bytes(out)

    def write_reg(self, reg: int, value: int) -> None:
        self.regs[reg] = value & 0xFF

    def read_reg(self, reg: int) -> int:
        return self.regs[reg]

    def before_read(self, pointer: int, n: int) -> None:
        """Hook: latch new data before a burst read."""


# A calibration set: the temperature/pressure words of the BMP280 datasheet's worked example,
# humidity words as read from a BME280 breakout.
DATASHEET_CALIBRATION = bme.Calibration(27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                                        75, 362, 0, 313, 50, 30)


class SimBME280(RegisterDevice):
    """BME280 (``chip="bme280"``) or BMP280 (``chip="bmp280"``)."""

    kind = "bme280"
    default_address = 0x76

    def __init__(self, *, chip: str = "bme280", calibration: bme.Calibration = DATASHEET_CALIBRATION,
                 enforce_timing: bool = True, **kwargs: Any) -> None:
        if chip not in ("bme280", "bmp280"):
            raise BadInput(f"simulated Bosch chip must be bme280 or bmp280 (got {chip!r})")
        self.kind = chip
        self.chip = chip
        self.calibration = calibration
        self.enforce_timing = enforce_timing
        self.channels = ("temperature", "pressure", "humidity") if chip == "bme280" else ("temperature", "pressure")
        self.measurements = 0
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        funcs = {"temperature": lambda t: 21.0 + 2.0 * math.sin(TWO_PI * t / 3600.0) + 0.1 * math.sin(TWO_PI * t / 7.0),
                 "pressure": lambda t: 101325.0 + 60.0 * math.sin(TWO_PI * t / 7200.0),
                 "humidity": lambda t: 45.0 + 5.0 * math.sin(TWO_PI * t / 1800.0)}
        noise = {"temperature": 0.005, "pressure": 2.6, "humidity": 0.02}   # RMS at x1 oversampling
        if self.chip == "bmp280":
            funcs.pop("humidity")
            noise.pop("humidity")
        return Synthetic(funcs, noise)

    def power_on_reset(self) -> None:
        super().power_on_reset()
        self.regs[bme.REG_CHIP_ID] = bme.CHIP_ID_BME280 if self.chip == "bme280" else 0x58
        block1, block2 = bme.encode_calibration(self.calibration)
        self.regs[0x88:0x88 + len(block1)] = block1
        if self.chip == "bme280":
            self.regs[0xE1:0xE1 + len(block2)] = block2
        self.regs[bme.REG_DATA:bme.REG_DATA + 8] = bme.encode_data(bme.SKIPPED_20BIT, bme.SKIPPED_20BIT,
                                                                   bme.SKIPPED_16BIT if self.chip == "bme280" else 0)
        if self.chip == "bmp280":
            self.regs[0xFD] = self.regs[0xFE] = 0
        self._hum_code = 0           # ctrl_hum as latched by the last ctrl_meas write
        self._iir: dict[str, float] = {}
        self._im_update_until = time.monotonic() + 0.0005
        self._measuring_until = 0.0
        self._pending: bytes | None = None   # a forced measurement's result, in the registers when it is done
        self._next_due = 0.0

    # configuration ------------------------------------------------------------------------
    @property
    def mode(self) -> int:
        return self.regs[bme.REG_CTRL_MEAS] & 0x03

    def _osrs(self) -> tuple[int, int, int]:
        cm = self.regs[bme.REG_CTRL_MEAS]
        h = bme.oversampling_factor(self._hum_code) if self.chip == "bme280" else 0
        return bme.oversampling_factor(cm >> 5), bme.oversampling_factor((cm >> 2) & 7), h

    def _cycle_s(self) -> float:
        t, p, h = self._osrs()
        return (bme.measurement_time_ms(t, p, h) + bme.standby_ms(self.regs[bme.REG_CONFIG] >> 5, self.chip)) / 1000.0

    def output_rate_hz(self) -> float:
        if self.rate_hz:
            return self.rate_hz
        return 1.0 / self._cycle_s() if self.mode == bme.MODE_NORMAL else 50.0

    def write_reg(self, reg: int, value: int) -> None:
        if reg == bme.REG_RESET:
            if value == bme.RESET_WORD:
                self.power_on_reset()
            return
        if reg == bme.REG_CTRL_HUM and self.chip == "bme280":
            self.regs[reg] = value & 0x07
        elif reg == bme.REG_CONFIG:
            if self.mode != bme.MODE_NORMAL:      # "writes to the config register in normal mode may be ignored"
                self.regs[reg] = value & 0xFD
        elif reg == bme.REG_CTRL_MEAS:
            self.regs[reg] = value
            self._hum_code = self.regs[bme.REG_CTRL_HUM]
            if value & 0x03 in (0b01, 0b10):
                self._measure(forced=True)             # forced mode returns to sleep when done
            elif value & 0x03 == bme.MODE_NORMAL:
                self._next_due = 0.0
        # calibration, id, status and data are read-only

    def _settle(self) -> None:
        if self._pending is not None and time.monotonic() >= self._measuring_until:
            self.regs[bme.REG_DATA:bme.REG_DATA + len(self._pending)] = self._pending
            self._pending = None
            self.regs[bme.REG_CTRL_MEAS] &= 0xFC

    def read_reg(self, reg: int) -> int:
        self._settle()
        if reg == bme.REG_STATUS:
            now = time.monotonic()
            return (bme.STATUS_MEASURING if now < self._measuring_until else 0) | \
                (bme.STATUS_IM_UPDATE if now < self._im_update_until else 0)
        return self.regs[reg]

    def before_read(self, pointer: int, n: int) -> None:
        self._settle()
        if self.mode != bme.MODE_NORMAL or not (bme.REG_DATA <= pointer <= 0xFE):
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
                self.regs[bme.REG_CTRL_MEAS] &= 0xFC
            return     # frozen: the data registers keep the last result
        self.measurements += 1
        osrs_t, osrs_p, osrs_h = self._osrs()
        values = self.noisy(self.next_values(), {"temperature": 1 / math.sqrt(max(osrs_t, 1)),
                                                 "pressure": 1 / math.sqrt(max(osrs_p, 1)),
                                                 "humidity": 1 / math.sqrt(max(osrs_h, 1))})
        cal = self.calibration
        coef = bme.filter_coefficient((self.regs[bme.REG_CONFIG] >> 2) & 7)
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
            self.regs[bme.REG_CTRL_MEAS] &= 0xFC

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


class SimMPU6050(RegisterDevice):
    """MPU-6050: asleep after power-up; ranges, DLPF and divider as configured."""

    kind = "mpu6050"
    default_address = 0x68
    channels = mpu.CHANNELS

    def default_signal(self) -> Synthetic:
        g = mpu.STANDARD_GRAVITY
        funcs = {
            "accel_x": lambda t: 0.3 * math.sin(TWO_PI * 0.5 * t),
            "accel_y": lambda t: 0.2 * math.cos(TWO_PI * 0.5 * t),
            "accel_z": lambda t: g + 0.5 * math.sin(TWO_PI * 5.0 * t),
            "gyro_x": lambda t: 0.10 * math.sin(TWO_PI * 0.5 * t),
            "gyro_y": lambda t: -0.05 * math.cos(TWO_PI * 0.5 * t),
            "gyro_z": lambda t: 0.02,
            "temperature": lambda t: 30.0 + 0.5 * math.sin(TWO_PI * t / 600.0),
        }
        # 400 µg/√Hz and 0.005 °/s/√Hz noise densities over the 260 Hz bandwidth
        a_n = 400e-6 * g * math.sqrt(260.0)
        g_n = math.radians(0.005) * math.sqrt(260.0)
        noise = {"accel_x": a_n, "accel_y": a_n, "accel_z": a_n, "gyro_x": g_n, "gyro_y": g_n, "gyro_z": g_n,
                 "temperature": 0.02}
        return Synthetic(funcs, noise)

    def power_on_reset(self) -> None:
        super().power_on_reset()
        self.regs[mpu.REG_PWR_MGMT_1] = mpu.PWR_SLEEP
        self.regs[mpu.REG_WHO_AM_I] = mpu.WHO_AM_I_MPU6050
        self._last_index = -1

    @property
    def asleep(self) -> bool:
        return bool(self.regs[mpu.REG_PWR_MGMT_1] & mpu.PWR_SLEEP)

    def config(self) -> tuple[int, int, int, int]:
        """(dlpf, divider, accel range g, gyro range dps) as configured."""
        accel = {v: k for k, v in mpu.ACCEL_RANGE_CODES.items()}[(self.regs[mpu.REG_ACCEL_CONFIG] >> 3) & 3]
        gyro = {v: k for k, v in mpu.GYRO_RANGE_CODES.items()}[(self.regs[mpu.REG_GYRO_CONFIG] >> 3) & 3]
        return self.regs[mpu.REG_CONFIG] & 7, self.regs[mpu.REG_SMPLRT_DIV], accel, gyro

    def output_rate_hz(self) -> float:
        dlpf, div, _, _ = self.config()
        return self.rate_hz or mpu.sample_rate_hz(dlpf, div)

    def write_reg(self, reg: int, value: int) -> None:
        if reg == mpu.REG_PWR_MGMT_1:
            if value & mpu.PWR_RESET:
                self.power_on_reset()
                return
            self.regs[reg] = value & 0x7F
        elif reg == mpu.REG_SIGNAL_PATH_RESET:
            if value & 0x07:
                self.regs[mpu.REG_ACCEL_XOUT_H:mpu.REG_ACCEL_XOUT_H + 14] = bytes(14)
        elif reg == mpu.REG_WHO_AM_I or mpu.REG_INT_STATUS <= reg <= 0x48:
            return   # read-only
        else:
            self.regs[reg] = value & 0xFF

    def read_reg(self, reg: int) -> int:
        value = self.regs[reg]
        if reg == mpu.REG_INT_STATUS:
            self.regs[reg] &= 0xFE   # DATA_RDY_INT clears on read
        return value

    def before_read(self, pointer: int, n: int) -> None:
        if self.asleep or not (mpu.REG_INT_STATUS <= pointer <= 0x48):
            return
        if self.advance == "per_read":
            if pointer == mpu.REG_ACCEL_XOUT_H:
                self._sample()
        else:
            index = int((time.monotonic() - self._t0) * self.output_rate_hz())
            if index != self._last_index:
                self._last_index = index
                self._sample()

    def _sample(self) -> None:
        if self.faults.frozen and self.samples_taken:
            return
        dlpf, _, accel_g, gyro_dps = self.config()
        bandwidth = mpu.DLPF_BANDWIDTH_HZ.get(dlpf, (260, 256))[0]
        v = self.noisy(self.next_values(), math.sqrt(bandwidth / 260.0))
        raw = (mpu.accel_from_si(v["accel_x"], accel_g), mpu.accel_from_si(v["accel_y"], accel_g),
               mpu.accel_from_si(v["accel_z"], accel_g), mpu.temperature_from_si(v["temperature"]),
               mpu.gyro_from_si(v["gyro_x"], gyro_dps), mpu.gyro_from_si(v["gyro_y"], gyro_dps),
               mpu.gyro_from_si(v["gyro_z"], gyro_dps))
        self.regs[mpu.REG_ACCEL_XOUT_H:mpu.REG_ACCEL_XOUT_H + 14] = mpu.encode_burst(*raw)
        self.regs[mpu.REG_INT_STATUS] |= 0x01


class SimSHT3x(SimDevice):
    """SHT3x: 16-bit commands, single-shot (NACK until done, or clock stretching) and periodic modes,
    heater, status and serial number, CRC on every word. ``enforce_timing=False`` makes results
    ready at once (for tests that must not sleep)."""

    kind = "sht3x"
    default_address = 0x44
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
                          "humidity": lambda t: 40.0 + 3.0 * math.sin(TWO_PI * t / 900.0)},
                         {"temperature": 0.04, "humidity": 0.08})

    def power_on_reset(self) -> None:
        self.status = sht.STATUS_RESET_DETECTED
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
        values = self.next_values()
        factor = {"high": 1.0, "medium": 2.0, "low": 3.75}[repeatability]
        v = self.noisy(values, factor)
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
            raise _nack("incomplete command")
        cmd = (data[0] << 8) | data[1]
        self.commands.append(cmd)
        now = time.monotonic()
        if self.periodic and cmd not in (sht.CMD_FETCH, sht.CMD_BREAK, sht.CMD_SOFT_RESET, sht.CMD_ART):
            self.status |= sht.STATUS_COMMAND_FAILED
            raise _nack(f"command {cmd:#06x} refused in periodic mode")
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
            self.status &= ~(sht.STATUS_ALERT_PENDING | sht.STATUS_RH_ALERT | sht.STATUS_T_ALERT
                             | sht.STATUS_RESET_DETECTED)
        elif cmd == sht.CMD_READ_SERIAL:
            self._out = sht.word_with_crc(self.serial >> 16) + sht.word_with_crc(self.serial & 0xFFFF)
        else:
            self.status |= sht.STATUS_COMMAND_FAILED
            raise _nack(f"unknown command {cmd:#06x}")

    def on_read(self, n: int) -> bytes:
        if self._pending is not None:
            ready_at, stretch, data = self._pending
            wait = ready_at - time.monotonic()
            if wait > 0:
                if not stretch:
                    raise _nack("measurement in progress")
                time.sleep(wait)     # clock stretching: the chip holds SCL low until it is done
            self._pending = None
            return (data + b"\xff" * n)[:n]
        if self._out is not None:
            data, self._out = self._out, None
            return (data + b"\xff" * n)[:n]
        raise _nack("no data to read")


class SimADS1115(SimDevice):
    """ADS1115: pointer register, 16-bit big-endian registers, single-shot conversions that take 1/DR
    (OS reads 0 meanwhile) and continuous mode. Inputs ``ain0``..``ain3`` in volts."""

    kind = "ads1115"
    default_address = 0x48
    channels = ("ain0", "ain1", "ain2", "ain3")

    def __init__(self, *, enforce_timing: bool = True, **kwargs: Any) -> None:
        self.enforce_timing = enforce_timing
        self.conversions = 0
        super().__init__(**kwargs)

    def default_signal(self) -> Synthetic:
        return Synthetic({"ain0": lambda t: 1.65 + 1.0 * math.sin(TWO_PI * 1.0 * t),
                          "ain1": lambda t: 0.5 + 0.25 * math.sin(TWO_PI * 0.1 * t),
                          "ain2": lambda t: 2.5,
                          "ain3": lambda t: 3.3 * ((t / 10.0) % 1.0)},
                         {"ain0": 50e-6, "ain1": 50e-6, "ain2": 50e-6, "ain3": 50e-6})

    def power_on_reset(self) -> None:
        self.regs = {ads.REG_CONVERSION: 0, ads.REG_CONFIG: ads.CONFIG_DEFAULT & 0x7FFF,
                     ads.REG_LO_THRESH: ads.LO_THRESH_DEFAULT, ads.REG_HI_THRESH: ads.HI_THRESH_DEFAULT}
        self.pointer = 0
        self._done_at = 0.0
        self._pending_code: int | None = None
        self._round: set[int] = set()
        self._values: dict[str, float] | None = None
        self._last_index = -1
        self._frozen_codes: dict[int, int] = {}

    def output_rate_hz(self) -> float:
        return self.rate_hz or float(ads.data_rate_sps((self.regs[ads.REG_CONFIG] >> 5) & 7))

    def _code(self, mux: int) -> int:
        cfg = self.regs[ads.REG_CONFIG]
        fsr = ads.full_scale_v((cfg >> 9) & 7)
        if self.faults.frozen and mux in self._frozen_codes:
            return self._frozen_codes[mux]
        if self.advance == "per_read":
            if self._values is None or mux in self._round:   # a new round of conversions: the next sample
                self._values = self.noisy(self.next_values())
                self._round = set()
            self._round.add(mux)
        else:
            self._values = self.noisy(self.next_values())
        pos, neg = ads.MUX_INPUTS[mux]
        volts = self._values[f"ain{pos}"] - (self._values[f"ain{neg}"] if neg is not None else 0.0)
        self.conversions += 1
        code = ads.volts_to_code(volts, fsr) & 0xFFFF
        self._frozen_codes[mux] = code
        return code

    def _settle(self) -> None:
        if self._pending_code is not None and time.monotonic() >= self._done_at:
            self.regs[ads.REG_CONVERSION] = self._pending_code
            self._pending_code = None

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] & 0x03
        if data[0] & 0xFC:
            raise _nack(f"pointer byte {data[0]:#04x} has reserved bits set")
        if len(data) < 3:
            return
        value = (data[1] << 8) | data[2]
        if self.pointer == ads.REG_CONVERSION:
            return   # read-only
        if self.pointer != ads.REG_CONFIG:
            self.regs[self.pointer] = value
            return
        self._settle()
        self.regs[ads.REG_CONFIG] = value & 0x7FFF
        continuous = not value & ads.MODE_SINGLE_BIT
        if continuous or value & ads.OS_BIT:
            if continuous:
                self._last_index = -1
            else:
                self._pending_code = self._code((value >> 12) & 7)
                dr = ads.data_rate_sps((value >> 5) & 7)
                self._done_at = time.monotonic() + (1.0 / dr if self.enforce_timing else 0.0)
                self._settle()

    def on_read(self, n: int) -> bytes:
        self._settle()
        cfg = self.regs[ads.REG_CONFIG]
        if self.pointer == ads.REG_CONFIG:
            busy = self._pending_code is not None
            word = cfg | (0 if busy else ads.OS_BIT)
        elif self.pointer == ads.REG_CONVERSION:
            if not cfg & ads.MODE_SINGLE_BIT:   # continuous: a fresh conversion per read or per 1/DR
                mux = (cfg >> 12) & 7
                if self.advance == "per_read":
                    self.regs[ads.REG_CONVERSION] = self._code(mux)
                else:
                    index = int((time.monotonic() - self._t0) * self.output_rate_hz())
                    if index != self._last_index:
                        self._last_index = index
                        self.regs[ads.REG_CONVERSION] = self._code(mux)
            word = self.regs[ads.REG_CONVERSION]
        else:
            word = self.regs[self.pointer]
        pair = bytes([(word >> 8) & 0xFF, word & 0xFF])
        return (pair * ((n + 1) // 2))[:n]


# --------------------------------------------------------------------------------------------
# The bus


class SimBus:
    """An smbus2.SMBus look-alike serving simulated chips. ``devices``: {address: SimDevice}."""

    def __init__(self, devices: dict[int, SimDevice] | None = None, faults: BusFaults | None = None, *,
                 bus: int = 1) -> None:
        self.devices: dict[int, SimDevice] = dict(devices or {})
        self.faults = faults or BusFaults()
        self._rng = random.Random(self.faults.seed)
        self._gone: set[int] = set()
        self._stuck_until = 0.0
        self._wire = threading.Lock()
        self.bus_number = bus
        self.label = f"simulated I2C bus {bus}"
        self.bus_lock = threading.RLock()   # shared by every I2CBus wrapping this SimBus
        self.fd: int | None = None
        self.address: int | None = None
        self.force = False
        self.pec = 0
        self.writes: deque[tuple[int, bytes]] = deque(maxlen=10000)   # every data byte written, per address
        self.transactions = 0
        self.nacks_injected = 0
        try:
            from smbus2 import I2cFunc

            self.funcs = I2cFunc(0x0EFF0009)  # I2C, SMBus quick/byte/byte-data/word/block/i2c-block, like i2c-bcm2835
        except ImportError:  # pragma: no cover
            self.funcs = 0x0EFF0009

    # smbus2 life cycle ------------------------------------------------------------------------
    def open(self, bus: int | str) -> None:
        self.bus_number = bus if isinstance(bus, int) else self.bus_number

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SimBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enable_pec(self, enable: bool = True) -> None:
        self.pec = int(enable)

    # fault control ------------------------------------------------------------------------
    def unplug(self, address: int) -> None:
        """The device stops answering (its address is NACKed) until :meth:`replug`."""
        self._gone.add(address)

    def replug(self, address: int, *, power_cycle: bool = True) -> None:
        """The device is back; with ``power_cycle`` its registers are at power-on values (it needs set-up)."""
        self._gone.discard(address)
        if power_cycle and address in self.devices:
            self.devices[address].power_on_reset()

    def stick(self, seconds: float) -> None:
        """The bus hangs (SDA held low) for ``seconds``: every transaction times out meanwhile."""
        self._stuck_until = time.monotonic() + seconds

    def set_nack_probability(self, p: float) -> None:
        self.faults.nack_probability = p

    # the wire -----------------------------------------------------------------------------
    def _address_phase(self, address: int) -> SimDevice:
        if time.monotonic() < self._stuck_until:
            raise OSError(errno.ETIMEDOUT, "Connection timed out (bus stuck)")
        if self.faults.nack_probability and self._rng.random() < self.faults.nack_probability:
            self.nacks_injected += 1
            raise _nack("injected")
        device = self.devices.get(address)
        if device is None or address in self._gone:
            raise _nack(f"no device at {address:#04x}")
        return device

    @contextmanager
    def _transaction(self, address: int) -> Iterator[SimDevice]:
        with self._wire:
            self.transactions += 1
            device = self._address_phase(address)
            try:
                yield device
            finally:
                device.on_stop()

    def _write(self, device: SimDevice, address: int, data: bytes | list[int]) -> None:
        data = bytes(data)
        self.writes.append((address, data))
        device.on_write(data)

    def _wr(self, address: int, write: bytes | list[int], nread: int) -> bytes:
        with self._transaction(address) as dev:
            self._write(dev, address, write)
            return dev.on_read(nread) if nread else b""

    # SMBus transactions -------------------------------------------------------------------
    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        with self._transaction(i2c_addr) as dev:
            dev.quick()

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        with self._transaction(i2c_addr) as dev:
            return dev.on_read(1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [value & 0xFF])

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._wr(i2c_addr, [register & 0xFF], 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._wr(i2c_addr, [register & 0xFF, value & 0xFF], 0)

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        lo, hi = self._wr(i2c_addr, [register & 0xFF], 2)
        return lo | (hi << 8)     # SMBus words are little-endian on the wire

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._wr(i2c_addr, [register & 0xFF, value & 0xFF, (value >> 8) & 0xFF], 0)

    def process_call(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> int:
        lo, hi = self._wr(i2c_addr, [register & 0xFF, value & 0xFF, (value >> 8) & 0xFF], 2)
        return lo | (hi << 8)

    def read_block_data(self, i2c_addr: int, register: int, force: bool | None = None) -> list[int]:
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [register & 0xFF])
            count = min(dev.on_read(1)[0], 32)
            return list(dev.on_read(count)) if count else []

    def write_block_data(self, i2c_addr: int, register: int, data: list[int], force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._wr(i2c_addr, [register & 0xFF, len(data), *data], 0)

    def block_process_call(self, i2c_addr: int, register: int, data: list[int],
                           force: bool | None = None) -> list[int]:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [register & 0xFF, len(data), *data])
            count = min(dev.on_read(1)[0], 32)
            return list(dev.on_read(count)) if count else []

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force: bool | None = None) -> list[int]:
        if length > 32:
            raise ValueError("Desired block length over 32 bytes")
        return list(self._wr(i2c_addr, [register & 0xFF], length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int],
                             force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._wr(i2c_addr, [register & 0xFF, *data], 0)

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transaction of ``smbus2.i2c_msg`` messages (repeated starts, one STOP at the end)."""
        with self._wire:
            self.transactions += 1
            touched: list[SimDevice] = []
            try:
                for msg in i2c_msgs:
                    device = self._address_phase(msg.addr)
                    if device not in touched:
                        touched.append(device)
                    if msg.flags & I2C_M_RD:
                        data = device.on_read(msg.len)
                        ctypes.memmove(msg.buf, data, msg.len)
                    else:
                        self._write(device, msg.addr, ctypes.string_at(msg.buf, msg.len))
            finally:
                for device in touched:
                    device.on_stop()


# --------------------------------------------------------------------------------------------
# Building a bus from a description

SIM_CHIPS: dict[str, Callable[..., SimDevice]] = {
    "bme280": lambda **kw: SimBME280(chip="bme280", **kw),
    "bmp280": lambda **kw: SimBME280(chip="bmp280", **kw),
    "mpu6050": SimMPU6050,
    "sht3x": SimSHT3x,
    "ads1115": SimADS1115,
}
DEFAULT_ADDRESSES = {"bme280": 0x76, "bmp280": 0x77, "mpu6050": 0x68, "sht3x": 0x44, "ads1115": 0x48}
_DEVICE_KEYS = ("kind", "address", "replay", "sample_rate_hz", "advance", "rate_hz", "noise", "seed",
                "enforce_timing", "frozen", "corrupt_crc")


def _flag(value: Any, where: str) -> bool:
    """A true/false setting: TOML/JSON booleans only (``bool("no")`` is True)."""
    if not isinstance(value, bool):
        raise BadInput(f"{where}: {value!r} is not true or false")
    return value


def _probability(value: Any, where: str) -> float:
    """A probability 0..1 (a number, not a string or a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{where}: {value!r} is not a probability (0..1)")
    if not 0.0 <= value <= 1.0:
        raise BadInput(f"{where}: {float(value)} is not a probability (0..1)")
    return float(value)


def _address(value: Any, where: str) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        address = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}.address: {value!r} is not an I2C address (write it like 0x68)") from None
    if not 0x03 <= address <= 0x77:
        raise BadInput(f"{where}.address: {address:#04x} is outside 0x03..0x77")
    return address


def make_sim_device(kind: str, spec: dict[str, Any] | None = None, *, where: str | None = None,
                    base_dir: str | Path | None = None) -> tuple[int, SimDevice]:
    """(address, device) for one entry of a description (see :func:`build_sim_bus`)."""
    spec = dict(spec or {})
    where = where or f"sim.{kind}"
    for key in spec:
        if key not in _DEVICE_KEYS:
            raise BadInput(f"{where}: unknown key {key!r}; known keys: {', '.join(_DEVICE_KEYS)}")
    kind = str(spec.get("kind", kind)).lower()
    if kind not in SIM_CHIPS:
        raise BadInput(f"{where}: no simulated chip {kind!r}; simulated chips: {', '.join(SIM_CHIPS)}")
    address = _address(spec.get("address", DEFAULT_ADDRESSES[kind]), where)
    kwargs: dict[str, Any] = {}
    if "replay" in spec:
        if not isinstance(spec["replay"], str):
            raise BadInput(f"{where}.replay: {spec['replay']!r} is not a file name")
        rate = spec.get("sample_rate_hz")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise BadInput(f"{where}.sample_rate_hz: {rate!r} is not a number")
        path = Path(spec["replay"])
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        kwargs["source"] = Recording.load(path, rate)
    for key, kind_of in (("advance", str), ("rate_hz", float), ("noise", float), ("seed", int)):
        if key in spec:
            value = spec[key]
            ok = isinstance(value, str) if kind_of is str else \
                isinstance(value, int | float) and not isinstance(value, bool) and (kind_of is float or
                                                                                     float(value).is_integer())
            if not ok or (key in ("rate_hz", "noise") and (value < 0 or (key == "rate_hz" and value == 0))):
                raise BadInput(f"{where}.{key}: {value!r} is not a valid {'positive ' if key == 'rate_hz' else ''}"
                               f"{kind_of.__name__}")
            kwargs[key] = kind_of(value)
    if "enforce_timing" in spec:
        if kind == "mpu6050":
            raise BadInput(f"{where}.enforce_timing: the mpu6050 simulation has no conversion time")
        kwargs["enforce_timing"] = _flag(spec["enforce_timing"], f"{where}.enforce_timing")
    frozen = _flag(spec.get("frozen", False), f"{where}.frozen")
    corrupt_crc = _probability(spec.get("corrupt_crc", 0.0), f"{where}.corrupt_crc")
    device = SIM_CHIPS[kind](**kwargs)
    device.faults.frozen = frozen
    device.faults.corrupt_crc = corrupt_crc
    return address, device


def build_sim_bus(description: dict[str, Any] | None = None, *, bus: int = 1,
                  base_dir: str | Path | None = None) -> SimBus:
    """A :class:`SimBus` from a small description, e.g.::

        {"mpu6050": {"address": 0x68, "replay": "walk.csv"},
         "room": {"kind": "bme280", "address": "0x77"},
         "faults": {"nack_probability": 0.01, "seed": 1}}

    A key names a simulated chip (``bme280``, ``bmp280``, ``mpu6050``, ``sht3x``, ``ads1115``) or is
    any name with a ``kind``. Per chip: ``address``, ``replay`` (CSV/NPZ in SI units, relative paths
    against ``base_dir``), ``sample_rate_hz`` (overrides the file's), ``advance`` ("per_read" or
    "time"), ``rate_hz`` (the time base of a synthetic signal), ``noise`` (scale, 0 = none), ``seed``,
    ``enforce_timing`` (bme280/bmp280 forced mode, sht3x, ads1115: results take their conversion time; false:
    at once), ``frozen``, ``corrupt_crc``. ``None``: :func:`default_sim_bus`.
    """
    if description is None:
        return default_sim_bus(bus=bus)
    devices: dict[int, SimDevice] = {}
    faults = BusFaults()
    for name, spec in description.items():
        if name == "faults":
            if not isinstance(spec, dict):
                raise BadInput(f"sim.faults: expected a table (nack_probability, seed), got {spec!r}")
            for key in spec:
                if key not in ("nack_probability", "seed"):
                    raise BadInput(f"sim.faults: unknown key {key!r}; known keys: nack_probability, seed")
            p = _probability(spec.get("nack_probability", 0.0), "sim.faults.nack_probability")
            faults = BusFaults(p, spec.get("seed", 0))
            continue
        if not isinstance(spec, dict):
            raise BadInput(f"sim.{name}: expected a table of settings, got {spec!r}")
        address, device = make_sim_device(name, spec, where=f"sim.{name}", base_dir=base_dir)
        if address in devices:
            raise BadInput(f"sim.{name}.address: {address:#04x} is already taken by another simulated chip")
        devices[address] = device
    return SimBus(devices, faults, bus=bus)


def default_sim_bus(*, bus: int = 1, seed: int = 0) -> SimBus:
    """One of each simulated chip at its usual address: bme280 0x76, bmp280 0x77, mpu6050 0x68,
    sht3x 0x44, ads1115 0x48."""
    return SimBus({addr: SIM_CHIPS[kind](seed=seed) for kind, addr in DEFAULT_ADDRESSES.items()}, bus=bus)


def sim_bus_for(driver: str, address: int | None = None, sim: dict[str, Any] | None = None,
                rate_hz: float | None = None, *, bus_number: int = 1, base_dir: str | Path | None = None) -> SimBus:
    """A :class:`SimBus` holding the one simulated chip a configured sensor needs (``spinal run --sim``).

    ``sim`` is the sensor's ``[sensors.sim]`` table: the per-chip keys of :func:`build_sim_bus`
    (``replay``, ``sample_rate_hz``, ``advance``, ``noise``, ``seed``, ``enforce_timing``, ``frozen``,
    ``corrupt_crc``, ``address``) plus ``nack_probability`` and ``fault_seed`` for the bus. ``rate_hz``
    (the sampler's rate) is the time base of a synthetic signal unless ``sim`` sets ``rate_hz``.
    """
    spec = dict(sim or {})
    if "kind" in spec:
        raise BadInput(f"sim.kind: the simulated chip is the sensor's driver ({driver}); remove 'kind'")
    p = _probability(spec.pop("nack_probability", 0.0), "sim.nack_probability")
    seed = spec.pop("fault_seed", 0)
    if address is not None:
        spec.setdefault("address", address)
    if rate_hz and "rate_hz" not in spec:
        spec["rate_hz"] = rate_hz
    addr, device = make_sim_device(driver, spec, where="sim", base_dir=base_dir)
    return SimBus({addr: device}, BusFaults(p, seed), bus=bus_number)
