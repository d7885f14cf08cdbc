"""Each reference model's data: training set, calibration set, validation set, normalization.

The training scripts and ``tests/models`` both call these functions, so the validation data a
test scores a committed bundle on is exactly the data its model card was measured on.
Every array the models see is normalized (``Norm.apply``) and laid out NTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import datasets as ds

SEED = 20261123


def round_robin(groups: np.ndarray) -> np.ndarray:
    """An order that takes one item from each group in turn (stable within a group).

    Validation sets are stored in this order so that their first samples, which the converter
    keeps as the bundle's golden vectors, cover every class (or fault, or month).
    """
    groups = np.asarray(groups)
    rank = np.empty(len(groups), dtype=np.int64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        rank[idx] = np.arange(len(idx))
    return np.lexsort((groups, rank))


@dataclass(frozen=True)
class Prepared:
    """One model's data. ``*_x`` are normalized NTC float32 windows; ``raw_*`` are in SI units."""

    norm: ds.Norm
    train_x: np.ndarray
    train_y: np.ndarray
    calib_x: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    info: dict[str, object] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# imu-activity: BasicMotions, 5 s windows (50 samples at 10 Hz), hop 2.5 s on the device

IMU_WINDOW = 50
IMU_HOP = 25
IMU_TRAIN_HOP = 5  # denser windows for training only (augmentation by shifting)
# The DSP chain in the bundle (device/dsp/): a per-window high-pass started from the window's first sample,
# which removes gravity and the chip's offsets (constant over a window) and keeps the motion.
IMU_PREPROCESS: tuple[dict[str, object], ...] = ({"block": "highpass", "cutoff_hz": 0.3, "order": 1},)
IMU_AUGMENT_COPIES = 3  # each TRAIN recording as 3 differently mounted MPU-6050s report it
IMU_PHYSICS_SEEDS = {"train": 1000, "calibration": 2000, "test": 3000}


def imu_physics_seed(split: str, recording: int, copy: int = 0) -> int:
    """The simulated chip's ``seed`` for one recording (``[sensors.sim] seed``; it picks the orientation too)."""
    return IMU_PHYSICS_SEEDS[split] + 100 * copy + recording


def imu_as_reported(recs: ds.Recordings, split: str, copy: int = 0) -> Any:
    """Every recording as an MPU-6050 mounted at a random orientation reports it (gravity, offsets, noise,
    counts), concatenated into one labelled recording (one segment per recording: no window crosses two)."""
    from device.recording import Recording

    body = [ds.mpu6050_reports(x, imu_physics_seed(split, i, copy)) for i, x in enumerate(recs.x)]
    labels = np.concatenate([[recs.classes[y]] * len(x) for x, y in zip(recs.x, recs.labels, strict=True)])
    segments = np.concatenate([[i] * len(x) for i, x in enumerate(recs.x)])
    return Recording(np.concatenate(body), ds.IMU_CHANNELS, ds.IMU_RATE_HZ, ds.IMU_UNITS,
                     labels.astype(object), segments.astype(np.int64), source=f"BasicMotions {split} (MPU-6050)")


def imu_spec(norm: ds.Norm | None = None) -> Any:
    """The manifest's first input (chain, window, channels), as the converter writes it."""
    from device.dsp import parse_chain
    from device.manifest import Normalization, TensorSpec

    return TensorSpec(
        name="window", shape=(1, IMU_WINDOW, len(ds.IMU_CHANNELS)), layout="NTC", channels=ds.IMU_CHANNELS,
        sample_rate_hz=ds.IMU_RATE_HZ, window=IMU_WINDOW, hop=IMU_HOP, units=ds.IMU_UNITS,
        preprocessing=parse_chain(list(IMU_PREPROCESS)),
        normalization=None if norm is None else Normalization(tuple(map(float, norm.mean)),
                                                              tuple(map(float, norm.std))))


def imu_activity() -> Prepared:
    """BasicMotions as a real MPU-6050 reports it: train on the fixed TRAIN split (each recording as three
    randomly mounted chips report it), validate on every TEST-split window (one random mounting per recording)
    through the bundle's chain. Windows are cut and normalized exactly as ``spinal convert`` cuts them from the
    recordings (``toolchain.calibration.recorded_windows``) and as the device prepares them."""
    from device import pipeline
    from toolchain.calibration import recorded_windows

    train = ds.basic_motions("train")
    test = ds.basic_motions("test")
    cal_rec = imu_as_reported(train, "calibration")
    val_rec = imu_as_reported(test, "test")
    cal = recorded_windows(cal_rec, ds.IMU_CHANNELS, IMU_WINDOW, IMU_HOP)
    val = recorded_windows(val_rec, ds.IMU_CHANNELS, IMU_WINDOW, IMU_HOP)
    bare = pipeline.InputPlan.for_input(imu_spec())
    mean, std = pipeline.fit_normalization(bare.features(cal.raw))
    norm = ds.Norm(mean=np.asarray(mean), std=np.asarray(std))
    plan = pipeline.InputPlan.for_input(imu_spec(norm))
    tx, ty = [], []
    for copy in range(IMU_AUGMENT_COPIES):
        cut = recorded_windows(imu_as_reported(train, "train", copy), ds.IMU_CHANNELS, IMU_WINDOW, IMU_TRAIN_HOP)
        tx.append(cut.raw)
        ty += [ds.ACTIVITIES.index(lab) for lab in cut.labels]
    train_raw = np.concatenate(tx)
    vy = np.asarray([ds.ACTIVITIES.index(lab) for lab in val.labels], dtype=np.int64)
    vr = val.starts // test.x.shape[1]
    return Prepared(
        norm=norm, train_x=plan.prepare(train_raw), train_y=np.asarray(ty, dtype=np.int64),
        calib_x=plan.prepare(cal.raw), val_x=plan.prepare(val.raw), val_y=vy,
        info={"train_recordings": len(train.x), "test_recordings": len(test.x),
              "train_windows": len(train_raw), "calibration_windows": len(cal.raw), "validation_windows": len(vy),
              "augment_copies": IMU_AUGMENT_COPIES},
        extra={"val_recording": vr, "test_raw": test.x, "test_labels": test.labels, "train_raw": train.x,
               "train_labels": train.labels, "calibration_recording": cal_rec, "validation_recording": val_rec,
               "val_raw": val.raw, "calib_raw": cal.raw},
    )


# --------------------------------------------------------------------------------------------
# anomaly: autoencoder on the same IMU windows; normal = any activity, anomaly = a sensor fault

ANOMALY_WINDOW = 50
ANOMALY_HOP = 25
ANOMALY_THRESHOLD_PER_CLASS = 2  # training recordings per class held out to set the threshold
ANOMALY_THRESHOLD_PERCENTILE = 95.0
ANOMALY_TRAIN_HOP = 1


def anomaly() -> Prepared:
    """Train on 32 TRAIN recordings, set the threshold on the other 8, validate on the TEST split:
    every test window as it was (normal, label 0) and one injected-fault copy of it (label 1)."""
    train = ds.basic_motions("train")
    test = ds.basic_motions("test")
    kept, held = ds.stratified_split(train.labels, ANOMALY_THRESHOLD_PER_CLASS, SEED)
    fit = ds.Recordings(train.x[kept], train.labels[kept], train.classes)
    thr = ds.Recordings(train.x[held], train.labels[held], train.classes)
    norm = ds.Norm.fit(fit.x)
    tx, _, _ = fit.windows(ANOMALY_WINDOW, ANOMALY_TRAIN_HOP)
    hx, _, _ = thr.windows(ANOMALY_WINDOW, IMU_TRAIN_HOP)
    cx, _, _ = fit.windows(ANOMALY_WINDOW, ANOMALY_HOP)
    # The int8 calibration set must span the scores the device will see, faults included:
    # the fit windows plus a faulty copy of each (faults drawn with another seed than validation's).
    cx = np.concatenate([cx, ds.inject_anomalies(cx, norm.std, seed=SEED + 1)[0]])
    normal, activity, _ = test.windows(ANOMALY_WINDOW, ANOMALY_HOP)
    faulty, kinds = ds.inject_anomalies(normal, norm.std, seed=SEED)
    vx = np.concatenate([normal, faulty])
    vy = np.concatenate([np.zeros(len(normal), np.int64), np.ones(len(faulty), np.int64)])
    kind_ids = np.asarray([-1] * len(normal) + [ds.ANOMALY_KINDS.index(k) for k in kinds], dtype=np.int64)
    activities = np.concatenate([activity, activity])
    order = round_robin(activities * 10 + kind_ids + 1)
    vx, vy, kind_ids, activities = vx[order], vy[order], kind_ids[order], activities[order]
    return Prepared(
        norm=norm, train_x=norm.apply(tx), train_y=np.zeros(len(tx), np.int64), calib_x=norm.apply(cx),
        val_x=norm.apply(vx), val_y=vy,
        info={"fit_recordings": len(kept), "threshold_recordings": len(held), "train_windows": len(tx),
              "threshold_windows": len(hx), "calibration_windows": len(cx),
              "validation_normal": len(normal), "validation_anomalous": len(faulty)},
        extra={"threshold_x": norm.apply(hx), "val_kind": kind_ids,
               "val_activity": activities},
    )


# --------------------------------------------------------------------------------------------
# weather: 24 h of hourly BME280 readings -> temperature 3 h after the last reading

WEATHER_WINDOW = 24
WEATHER_HORIZON = 3
WEATHER_VALIDATION_MONTHS = (3, 6, 9, 12)
WEATHER_TRAIN_MONTHS = tuple(m for m in range(1, 13) if m not in WEATHER_VALIDATION_MONTHS)


def weather() -> Prepared:
    """Greensboro TMY3: train on 8 months, validate on March, June, September and December.

    Windows never cross a month boundary (each TMY month comes from a different year).
    The calibration set is every 4th training window.
    """
    data = ds.tmy3_weather()
    tx, ty, _ = ds.weather_windows(data, WEATHER_TRAIN_MONTHS, WEATHER_WINDOW, WEATHER_HORIZON)
    vx, vy, vm = ds.weather_windows(data, WEATHER_VALIDATION_MONTHS, WEATHER_WINDOW, WEATHER_HORIZON)
    order = round_robin(vm)
    vx, vy, vm = vx[order], vy[order], vm[order]
    train_hours = data.x[np.isin(data.month, WEATHER_TRAIN_MONTHS)]
    norm = ds.Norm.fit(train_hours)
    years = {int(m): int(data.year[data.month == m][0]) for m in range(1, 13)}
    return Prepared(
        norm=norm, train_x=norm.apply(tx), train_y=ty, calib_x=norm.apply(tx[::4]),
        val_x=norm.apply(vx), val_y=vy,
        info={"site": data.site, "train_windows": len(tx), "calibration_windows": len(tx[::4]),
              "validation_windows": len(vx), "month_source_years": years},
        extra={"val_month": vm, "val_last_temp": vx[:, -1, 0], "hourly": data.x, "month": data.month},
    )
