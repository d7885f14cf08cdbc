"""Training, calibration and validation data for the reference models, rebuilt from package data.

Nothing is downloaded: BasicMotions ships inside sktime (``sktime/datasets/data/BasicMotions``)
and the TMY3 weather files ship inside pvlib (``pvlib/data``). Every function here is
deterministic, so ``make models`` and ``tests/models`` rebuild the very same arrays.

The window and normalization maths match the device pipeline (``device/pipeline/``):

- readings are stacked in time order as ``[time, channels]`` in SI units (or the unit named
  in the manifest);
- a window of ``window`` samples is emitted every ``hop`` samples once ``window`` samples have
  arrived (the first window covers samples ``0..window-1``), giving ``NTC`` batches
  ``[batch, time, channels]``;
- each channel is standardised as ``(x - mean) / std`` in float32, with ``mean`` and ``std``
  taken from the training data and recorded in the manifest's ``inputs[0].normalization``.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device import pipeline

# --------------------------------------------------------------------------------------------
# Windows and normalization (the device-compatible maths)


def sliding_windows(series: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Every full window of a ``[time, channels]`` series, ``[n, window, channels]`` (NTC).

    The device's own function (:func:`device.pipeline.sliding_windows`): windows start at
    samples ``0, hop, 2*hop, ...`` and a partial window at the end is dropped.
    """
    return pipeline.sliding_windows(series, window, hop)


@dataclass(frozen=True)
class Norm:
    """Per-channel standardisation ``(x - mean) / std``, as recorded in the manifest."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray) -> Norm:
        """Mean and standard deviation of each channel (last axis) over everything else."""
        flat = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])
        std = flat.std(axis=0)
        # Round-trip through float32, which is what the manifest and the device hold.
        return cls(mean=flat.mean(axis=0).astype(np.float32),
                   std=np.maximum(std, 1e-6).astype(np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of ``x`` (channels on the last axis), as the device computes it."""
        return pipeline.normalize(x, self.mean, self.std)

    def as_lists(self) -> tuple[list[float], list[float]]:
        """``(mean, std)`` as plain floats for JSON."""
        return [float(v) for v in self.mean], [float(v) for v in self.std]


# --------------------------------------------------------------------------------------------
# BasicMotions (UEA archive, shipped in sktime)

IMU_CHANNELS = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
IMU_UNITS = ("m/s^2", "m/s^2", "m/s^2", "rad/s", "rad/s", "rad/s")
IMU_RATE_HZ = 10.0
# The MPU-6050 ranges that hold BasicMotions without clipping: its largest |accel| is 29.4 m/s²
# (3 g, so ±8 g) and its largest |gyro| 34.87 rad/s (the watch's own ±2000 °/s limit).
IMU_ACCEL_RANGE_G = 8
IMU_GYRO_RANGE_DPS = 2000
IMU_FULL_SCALE = np.asarray([IMU_ACCEL_RANGE_G * 9.80665] * 3 + [IMU_GYRO_RANGE_DPS * np.pi / 180.0] * 3,
                            dtype=np.float32)
ACTIVITIES = ("badminton", "running", "standing", "walking")


@dataclass(frozen=True)
class Recordings:
    """Equal-length recordings ``x[recording, time, channel]`` with integer class ``labels``."""

    x: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def windows(self, window: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(windows NTC, label per window, recording index per window)``."""
        xs, ys, rs = [], [], []
        for i, rec in enumerate(self.x):
            w = sliding_windows(rec, window, hop)
            xs.append(w)
            ys.append(np.full(len(w), self.labels[i], dtype=np.int64))
            rs.append(np.full(len(w), i, dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(rs)


def mpu6050_reports(body: np.ndarray, seed: int, orientation: object = "random",
                    accel_range_g: int | None = None, gyro_range_dps: int | None = None, dlpf: int = 3) -> np.ndarray:
    """What an MPU-6050 reports for gravity-free body motion ``[time, 6]`` (accel m/s², gyro rad/s).

    The simulated chip's own model (``device/sensors/sim/mpu6050.py``, built with ``seed`` exactly as
    ``spinal run --sim`` builds it): gravity along the mounting ``orientation`` (random: uniform over all
    rotations), the part's zero-g and zero-rate offsets, datasheet noise at the DLPF bandwidth (``dlpf`` 3,
    the driver's default: 44/42 Hz), then the chip's counts at its ranges (rounding, saturation).
    """
    import math

    from device.sensors import mpu6050 as mpu
    from device.sensors.sim import mpu6050 as sim

    accel_range_g = accel_range_g or IMU_ACCEL_RANGE_G
    gyro_range_dps = gyro_range_dps or IMU_GYRO_RANGE_DPS
    chip = sim.SimMPU6050(orientation=orientation, seed=seed)
    body = np.asarray(body, dtype=np.float64)
    n = len(body)
    bw_accel, bw_gyro = mpu.DLPF_BANDWIDTH_HZ[dlpf]
    rng = np.random.default_rng([seed, 7])
    accel = (body[:, :3] + chip.gravity + chip.accel_offset
             + rng.normal(0.0, sim.accel_noise_ms2(bw_accel), size=(n, 3)))
    gyro = body[:, 3:] + chip.gyro_offset + rng.normal(0.0, sim.gyro_noise_rad_s(bw_gyro), size=(n, 3))
    a_lsb = mpu.STANDARD_GRAVITY / mpu.ACCEL_LSB_PER_G[accel_range_g]
    g_lsb = math.radians(1.0 / mpu.GYRO_LSB_PER_DPS[gyro_range_dps])
    accel = np.clip(np.round(accel / a_lsb), -32768, 32767) * a_lsb
    gyro = np.clip(np.round(gyro / g_lsb), -32768, 32767) * g_lsb
    return np.concatenate([accel, gyro], axis=1)


def recorded_windows(paths: list[Path], channels: tuple[str, ...], window: int, hop: int
                     ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Raw windows ``(M, window, C)`` and their labels from recordings made with ``spinal record``
    (``device/recording.py``), cut as the device and ``spinal convert`` cut them (per segment; windows that
    span two labels dropped). Feed them to ``device.pipeline.InputPlan.prepare`` to train on what the
    bundle's chain makes of them."""
    from device import recording
    from toolchain.calibration import recorded_windows as cut

    xs, labels = [], []
    for path in paths:
        w = cut(recording.read(Path(path)), channels, window, hop)
        xs.append(w.raw)
        labels += list(w.labels)
    return np.concatenate(xs), tuple(labels)


def _package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it (sktime imports slowly)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations)))


def basic_motions_path(split: str) -> Path:
    """Path of sktime's ``BasicMotions_TRAIN.ts`` or ``BasicMotions_TEST.ts``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = _package_dir("sktime") / "datasets" / "data" / "BasicMotions" / f"BasicMotions_{split.upper()}.ts"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BasicMotions is missing from the installed sktime")
    return path


def parse_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """Parse an equal-length multivariate ``.ts`` file: ``([cases, dims, length], labels)``."""
    cases: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        cases.append([[float(v) for v in dim.split(",")] for dim in dims])
        labels.append(label.strip())
    return np.asarray(cases, dtype=np.float64), labels


def basic_motions(split: str) -> Recordings:
    """The BasicMotions train or test split, ``x[recording, time, channel]`` in SI units.

    The watch's accelerometer is stored in m/s² with gravity already removed (a standing
    wearer reads about 0 on every axis, not 9.81 on one) and its gyroscope in rad/s (running
    swings the wrist at a few rad/s); both are used as stored, no conversion is needed.
    """
    raw, names = parse_ts(basic_motions_path(split))
    x = np.transpose(raw, (0, 2, 1)).astype(np.float32)  # [case, time, channel]
    lookup = {name: i for i, name in enumerate(ACTIVITIES)}
    labels = np.asarray([lookup[n.lower()] for n in names], dtype=np.int64)
    return Recordings(x=x, labels=labels, classes=ACTIVITIES)


def stratified_split(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``: ``per_class`` recordings of each class are held out."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held += sorted(rng.choice(idx, size=per_class, replace=False).tolist())
    held_arr = np.asarray(sorted(held), dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_arr)
    return kept, held_arr


# --------------------------------------------------------------------------------------------
# Injected sensor faults for the anomaly model

ANOMALY_KINDS = ("spike", "stuck", "noise", "bias")


def inject_anomalies(windows: np.ndarray, scale: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """One faulty copy of every window (SI units, NTC); fault kinds cycle through ANOMALY_KINDS.

    ``scale`` is each channel's typical spread (its standard deviation over the training data),
    so that the faults have a physically comparable size on every channel:

    - ``spike``: 1-3 consecutive samples of one channel read full scale, ±IMU_FULL_SCALE (a
      glitch on the bus or a knock that saturates the sensor);
    - ``stuck``: one sensor (3 axes) repeats its last value for the last 20-35 samples (frozen data);
    - ``noise``: one sensor gets Gaussian noise of 1-2 x scale on all its axes (a loose mount);
    - ``bias``: one channel is offset by 2-3 x scale for the whole window (a calibration jump).
    """
    rng = np.random.default_rng(seed)
    out = np.array(windows, dtype=np.float32, copy=True)
    n, length, channels = out.shape
    kinds: list[str] = []
    for i in range(n):
        kind = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
        kinds.append(kind)
        w = out[i]
        if kind == "spike":
            ch = int(rng.integers(channels))
            width = int(rng.integers(1, 4))
            start = int(rng.integers(0, length - width))
            w[start : start + width, ch] = rng.choice([-1.0, 1.0]) * IMU_FULL_SCALE[ch]
        elif kind == "stuck":
            sensor = slice(0, 3) if rng.random() < 0.5 else slice(3, 6)
            span = int(rng.integers(20, 36))
            w[length - span :, sensor] = w[length - span - 1, sensor]
        elif kind == "noise":
            sensor = slice(0, 3) if rng.random() < 0.5 else slice(3, 6)
            sigma = rng.uniform(1, 2) * scale[sensor]
            w[:, sensor] += rng.normal(size=(length, 3)).astype(np.float32) * sigma
        else:
            ch = int(rng.integers(channels))
            w[:, ch] += rng.choice([-1.0, 1.0]) * rng.uniform(2, 3) * scale[ch]
    return out, kinds


# --------------------------------------------------------------------------------------------
# TMY3 weather (shipped in pvlib)

WEATHER_CHANNELS = ("temperature", "humidity", "pressure")
WEATHER_UNITS = ("degC", "%RH", "Pa")
WEATHER_RATE_HZ = 1.0 / 3600.0
WEATHER_FILE = "723170TYA.CSV"  # Greensboro NC; 703165TY (Sand Point AK) has pressure fixed at 1012 hPa


@dataclass(frozen=True)
class HourlyWeather:
    """Hourly readings ``x[hour, (temperature °C, humidity %RH, pressure Pa)]`` with each hour's
    calendar ``month`` and the ``year`` that TMY took that month from."""

    x: np.ndarray
    month: np.ndarray
    year: np.ndarray
    hour_of_day: np.ndarray
    site: str


def tmy3_weather(filename: str = WEATHER_FILE) -> HourlyWeather:
    """One of pvlib's bundled TMY3 files as BME280-like channels (pressure converted hPa→Pa)."""
    import warnings

    import pvlib

    path = Path(pvlib.__file__).parent / "data" / filename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    x = np.stack([df["temp_air"].to_numpy(np.float64),
                  df["relative_humidity"].to_numpy(np.float64),
                  df["pressure"].to_numpy(np.float64) * 100.0], axis=1).astype(np.float32)
    # The file's own date column, not the timestamp index: TMY3 stamps the last hour of a day
    # "24:00", which the index rolls over into the next day (and month, and year).
    dates = df["Date (MM/DD/YYYY)"].astype(str).str.split("/", expand=True).astype(int)
    hours = df["Time (HH:MM)"].astype(str).str.split(":", expand=True)[0].astype(int)
    site = str(meta.get("Name", filename)).strip('"')
    return HourlyWeather(x=x, month=dates[0].to_numpy(np.int64), year=dates[2].to_numpy(np.int64),
                         hour_of_day=(hours.to_numpy(np.int64) - 1), site=site)


def weather_windows(data: HourlyWeather, months: tuple[int, ...], window: int, horizon: int,
                    hop: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ``[n, window, 3]`` of hourly readings and the temperature ``horizon`` hours after
    each window's last reading, ``(x, target °C, month)``.

    TMY stitches each calendar month from a different year, so a window (and its target)
    never crosses a month boundary.
    """
    xs, ys, ms = [], [], []
    for m in months:
        idx = np.flatnonzero(data.month == m)
        if len(idx) == 0 or not np.all(np.diff(idx) == 1):
            raise ValueError(f"month {m} is missing or not contiguous in {data.site}")
        block = data.x[idx]
        for start in range(0, len(block) - window - horizon + 1, hop):
            xs.append(block[start : start + window])
            ys.append(block[start + window - 1 + horizon, 0])
            ms.append(m)
    return (np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.float32),
            np.asarray(ms, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Replay recordings for the simulated sensors


def write_replay_csv(path: Path, series: np.ndarray, channels: tuple[str, ...], rate_hz: float) -> None:
    """Write a ``[time, channels]`` recording as CSV: ``time_s`` then one column per channel.

    Values are in the SI units the manifest names (6 significant digits; ``\\n`` line ends).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["time_s", *channels])
        for i, row in enumerate(np.asarray(series, dtype=np.float64)):
            writer.writerow([f"{i / rate_hz:.10g}", *(f"{v:.6g}" for v in row)])


def read_replay_csv(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a replay CSV back: ``(time_s, values [time, channels], channel names)``."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], np.asarray(rows[1:], dtype=np.float64)
    if header[0] != "time_s":
        raise ValueError(f"{path}: first column must be time_s, got {header[0]!r}")
    return body[:, 0], body[:, 1:].astype(np.float32), tuple(header[1:])
