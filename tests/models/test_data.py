"""Data preparation for the reference models: package data parsed right, windows and splits honest."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from device import pipeline
from models import build, datasets, prepare, training


def test_basic_motions_split_shapes_and_classes() -> None:
    for split in ("train", "test"):
        rec = datasets.basic_motions(split)
        assert rec.x.shape == (40, 100, 6) and rec.x.dtype == np.float32
        assert np.bincount(rec.labels).tolist() == [10, 10, 10, 10]
    assert not np.array_equal(datasets.basic_motions("train").x, datasets.basic_motions("test").x)


def test_basic_motions_units_are_si_with_gravity_removed() -> None:
    """The reasoning behind 'no unit conversion': standing reads ~0 m/s² on every axis (gravity
    removed; in g or with gravity one axis would read ~1 or ~9.8), running turns the wrist at rad/s rates."""
    rec = datasets.basic_motions("train")
    standing = rec.x[rec.labels == datasets.ACTIVITIES.index("standing")]
    running = rec.x[rec.labels == datasets.ACTIVITIES.index("running")]
    assert np.all(np.abs(standing[..., :3].mean(axis=(0, 1))) < 0.5)
    assert 5.0 < np.abs(running[..., :3]).max() < datasets.IMU_FULL_SCALE[0]  # m/s², within ±8 g
    assert running[..., 3:].std() > 1.0 and np.abs(rec.x[..., 3:]).max() <= datasets.IMU_FULL_SCALE[3] + 1e-3


def test_windows_and_normalization_are_the_device_pipelines() -> None:
    series = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
    np.testing.assert_array_equal(datasets.sliding_windows(series, 50, 25), pipeline.sliding_windows(series, 50, 25))
    norm = datasets.Norm.fit(series)
    np.testing.assert_allclose(norm.apply(series), (series - series.mean(0)) / series.std(0), atol=1e-5)
    np.testing.assert_array_equal(norm.apply(series), pipeline.normalize(series, norm.mean, norm.std))


def test_imu_training_data_is_standardised_and_split_by_recording() -> None:
    data = prepare.imu_activity()
    assert data.train_x.shape[1:] == data.val_x.shape[1:] == (prepare.IMU_WINDOW, 6)
    flat = data.train_x.reshape(-1, 6)
    assert np.all(np.abs(flat.mean(0)) < 0.15) and np.all(np.abs(flat.std(0) - 1) < 0.15)
    assert len(data.val_x) == 40 * 3  # every TEST recording, windows at the device hop
    assert np.bincount(data.val_y[:8], minlength=4).min() >= 2  # golden vectors span the classes


def test_tmy3_months_come_from_the_date_column() -> None:
    hourly = datasets.tmy3_weather()
    hours = np.bincount(hourly.month)[1:]
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    np.testing.assert_array_equal(hours, days * 24)  # the 24:00 rows stay in their own day and month
    assert hourly.x[:, 2].min() > 90_000 and hourly.x[:, 2].max() < 105_000  # Pa
    assert len(set(hourly.year.tolist())) > 6  # TMY: months from different years


def test_weather_windows_never_cross_a_month() -> None:
    months = np.repeat(np.arange(1, 13), 40)
    x = np.stack([months.astype(np.float32)] * 3, axis=1)  # every value says which month it is
    fake = datasets.HourlyWeather(x=x, month=months, year=months, hour_of_day=np.zeros_like(months), site="fake")
    wx, wy, wm = datasets.weather_windows(fake, (2, 5), window=24, horizon=3)
    assert len(wx) == 2 * (40 - 24 - 3 + 1)
    for window, target, month in zip(wx, wy, wm, strict=True):
        assert np.all(window == month) and target == month


def test_weather_split_keeps_validation_months_out_of_training() -> None:
    assert not set(prepare.WEATHER_TRAIN_MONTHS) & set(prepare.WEATHER_VALIDATION_MONTHS)
    data = prepare.weather()
    assert set(np.unique(data.extra["val_month"]).tolist()) == set(prepare.WEATHER_VALIDATION_MONTHS)
    assert len(data.val_x) == sum(d * 24 - 26 for d in (31, 30, 30, 31))


def test_injected_anomalies_are_seeded_and_change_every_window() -> None:
    normal = datasets.basic_motions("test").windows(50, 25)[0]
    scale = np.ones(6, dtype=np.float32)
    a, kinds = datasets.inject_anomalies(normal, scale, seed=1)
    b, _ = datasets.inject_anomalies(normal, scale, seed=1)
    c, _ = datasets.inject_anomalies(normal, scale, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert kinds[:4] == list(datasets.ANOMALY_KINDS)
    changed = np.any(a != normal, axis=(1, 2))
    assert changed.mean() > 0.95  # a stuck axis that was already constant is the only no-op
    spikes = a[[i for i, k in enumerate(kinds) if k == "spike"]]
    assert np.all(np.isclose(np.abs(spikes), datasets.IMU_FULL_SCALE).any(axis=(1, 2)))


def test_anomaly_calibration_covers_faults_and_validation_is_balanced() -> None:
    data = prepare.anomaly()
    assert data.val_y.sum() == len(data.val_y) // 2
    assert len(data.calib_x) == 2 * 32 * 3  # the fit windows at the device hop and a faulty copy of each
    assert set(np.unique(data.extra["val_kind"]).tolist()) == {-1, 0, 1, 2, 3}


def test_round_robin_interleaves_groups_stably() -> None:
    groups = np.array([0, 0, 0, 1, 1, 2])
    order = prepare.round_robin(groups)
    assert groups[order].tolist() == [0, 1, 2, 0, 1, 0]
    assert order.tolist() == [0, 3, 5, 1, 4, 2]


def test_training_is_seeded() -> None:
    """Two runs with the same seed give the same weights (deterministic algorithms, one thread)."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("imu_train", build.MODELS / "imu-activity" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = prepare.imu_activity()
    states = []
    for _ in range(2):
        training.seed_everything(module.SEED)
        model = module.make_model()
        training.train(model, data.train_x[:96], data.train_y[:96], torch.nn.functional.cross_entropy, epochs=2,
                       batch_size=32, lr=3e-3, seed=module.SEED)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
