"""Simple baselines on each reference model's own split, for honest model cards.

- imu-activity: a random forest on window statistics (mean, std, min, max, RMS, peak frequency of each
  channel, computed by the device's own ``features`` DSP block on the windows the model sees);
- weather: ridge regression on the same 24 h window (flattened, normalized as the model's input);
- anomaly: two hand rules (a reading far outside the normal range; a sensor whose three axes stop moving),
  and ROC AUC over five fault seeds for both the rules and the autoencoder, with the spread.

scikit-learn is a host package (the ``dev`` extra); nothing here is imported by ``device``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import datasets as ds
from models import evaluate
from models.prepare import Prepared

FOREST_FEATURES = ("mean", "std", "min", "max", "rms", "peak_hz")


def window_statistics(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """``(M, T, C)`` windows → ``(M, features * C)`` statistics, by the device's ``features`` block."""
    from device.dsp import Features, Stage

    fn = Features(features=FOREST_FEATURES).compile(Stage(x.shape[1], x.shape[2], rate_hz))
    return np.stack([fn(w).reshape(-1) for w in np.asarray(x, np.float64)])


def imu_forest(data: Prepared) -> dict[str, Any]:
    """Random forest (200 trees, seed 0) on window statistics; the same training and validation windows."""
    from sklearn.ensemble import RandomForestClassifier

    train = window_statistics(data.train_x, ds.IMU_RATE_HZ)
    val = window_statistics(data.val_x, ds.IMU_RATE_HZ)
    forest = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(train, data.train_y)
    probs = forest.predict_proba(val)
    metrics = evaluate.score_classification(np.log(probs + 1e-9), data)
    return {"name": "random forest on window statistics", "features": list(FOREST_FEATURES), "trees": 200,
            "metrics": metrics}


def weather_ridge(data: Prepared) -> dict[str, Any]:
    """Ridge regression (alpha 1) on the flattened normalized window; the same training and validation windows."""
    from sklearn.linear_model import Ridge

    flat = data.train_x.reshape(len(data.train_x), -1)
    model = Ridge(alpha=1.0).fit(flat, data.train_y.reshape(len(flat), -1))
    pred = model.predict(data.val_x.reshape(len(data.val_x), -1)).reshape(data.val_y.shape)
    return {"name": "ridge regression on the same window", "alpha": 1.0,
            "metrics": {"mae": evaluate.mae(pred, data.val_y), "rmse": evaluate.rmse(pred, data.val_y)}}


STUCK_SAMPLES = 20


def hand_rule_scores(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Two rules on normalized windows, each standardised on ``reference`` (normal windows), the larger wins:

    1. out of range: the largest ``|x|`` in the window (a spike, a bias, a noisy mount);
    2. stuck: the smallest spread of a sensor's three axes over the last 20 samples, negated (frozen data).
    """
    def rules(w: np.ndarray) -> np.ndarray:
        peak = np.abs(w).max(axis=(1, 2))
        tail = w[:, -STUCK_SAMPLES:, :]
        spread = np.minimum(tail[:, :, :3].std(axis=1).sum(axis=1), tail[:, :, 3:].std(axis=1).sum(axis=1))
        return np.stack([peak, -np.log(spread + 1e-6)], axis=1)

    ref = rules(np.asarray(reference, np.float64))
    mu, sd = ref.mean(axis=0), ref.std(axis=0) + 1e-9
    return ((rules(np.asarray(x, np.float64)) - mu) / sd).max(axis=1)


def anomaly_validation(data: Prepared, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The anomaly validation set with faults drawn from ``seed``: every TEST window as it was and one faulty
    copy (normalized as the model's input)."""
    from models import prepare

    test = ds.basic_motions("test")
    normal, _, _ = test.windows(prepare.ANOMALY_WINDOW, prepare.ANOMALY_HOP)
    faulty, _ = ds.inject_anomalies(normal, data.norm.std, seed=seed)
    x = data.norm.apply(np.concatenate([normal, faulty]))
    y = np.concatenate([np.zeros(len(normal), bool), np.ones(len(faulty), bool)])
    return x, y


def anomaly_over_seeds(data: Prepared, bundle_path: Any, seeds: tuple[int, ...]) -> dict[str, Any]:
    """ROC AUC of the bundle's fp32 autoencoder and of the hand rules for each fault seed."""
    from device.bundle import open_bundle

    model_auc, rules_auc = [], []
    with open_bundle(bundle_path) as bundle:
        art = bundle.manifest.artifact("model.fp32.onnx")
        for seed in seeds:
            x, y = anomaly_validation(data, seed)
            model_auc.append(evaluate.roc_auc(evaluate.run_artifact(bundle, art, x).reshape(-1), y))
            rules_auc.append(evaluate.roc_auc(hand_rule_scores(x, data.train_x), y))

    def spread(values: list[float]) -> dict[str, Any]:
        v = np.asarray(values)
        return {"per_seed": [round(float(a), 4) for a in v], "mean": round(float(v.mean()), 4),
                "std": round(float(v.std()), 4), "min": round(float(v.min()), 4), "max": round(float(v.max()), 4)}

    return {"name": "two hand rules (out of range; stuck sensor)", "seeds": list(seeds),
            "autoencoder_fp32_auc": spread(model_auc), "hand_rules_auc": spread(rules_auc)}
