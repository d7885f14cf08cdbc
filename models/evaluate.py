"""Run a bundle's artifacts on validation data with the device runtime, and the metrics of each model.

Shared by the build (which writes ``metrics.json`` and the model card) and ``tests/models`` (which
re-scores the committed bundles and compares).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.bundle import Bundle
from device.manifest import Artifact

# --------------------------------------------------------------------------------------------
# Metrics


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(np.argmax(logits.reshape(len(labels), -1), axis=1) == labels) * 100.0)


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(pred.reshape(-1) - target.reshape(-1))))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((pred.reshape(-1) - target.reshape(-1)) ** 2)))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half), in [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs both positive and negative samples")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def precision_recall(scores: np.ndarray, positive: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall in percent of the rule ``score > threshold``."""
    flagged = np.asarray(scores).reshape(-1) > threshold
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    tp = float(np.sum(flagged & positive))
    precision = tp / max(float(np.sum(flagged)), 1.0) * 100.0
    recall = tp / max(float(np.sum(positive)), 1.0) * 100.0
    return precision, recall


# --------------------------------------------------------------------------------------------
# Running one artifact: with the device's own runtime layer


def runtime_for(artifact: Artifact) -> str:
    """The runtime that runs an artifact here: onnxruntime for ONNX, LiteRT for TFLite."""
    return "onnxruntime" if artifact.format == "onnx" else "litert"


def run_artifact(bundle: Bundle, artifact: Artifact, x: np.ndarray) -> np.ndarray:
    """The task output of ``artifact`` for every window in ``x`` (logical NTC float32, one at a time).

    Loads the artifact through :func:`device.runtime.load_model` — the code the daemon runs, which
    quantizes int8 inputs, dequantizes int8 outputs and adapts layouts from the manifest — so the
    numbers in a model card are the numbers a device gets.
    """
    from device.runtime import RuntimePolicy, load_model

    spec = bundle.manifest.inputs[0]
    output = bundle.manifest.task.output
    policy = RuntimePolicy(runtime=runtime_for(artifact), artifact=artifact.path, threads=1, autotune=False)
    with load_model(bundle, policy) as model:
        outs = [model.run({spec.name: x[i : i + 1]})[output] for i in range(len(x))]
    return np.concatenate(outs, axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Each reference model's scores (what the model cards report and tests/models re-checks)


def score_classification(outputs: np.ndarray, data: Any, threshold: float | None = None) -> dict[str, float]:
    """Window top-1 accuracy and recording accuracy (majority vote of a recording's windows), in %."""
    labels = data.val_y
    pred = np.argmax(outputs.reshape(len(labels), -1), axis=1)
    rec = data.extra["val_recording"]
    votes = []
    for r in np.unique(rec):
        sel = rec == r
        counts = np.bincount(pred[sel], minlength=outputs.shape[-1])
        votes.append(int(np.argmax(counts)) == int(labels[sel][0]))
    return {"accuracy": accuracy(outputs, labels), "recording_accuracy": float(np.mean(votes) * 100.0)}


def score_regression(outputs: np.ndarray, data: Any, threshold: float | None = None) -> dict[str, float]:
    """MAE and RMSE of the forecast, and the same for persistence (the last reading) as a baseline."""
    last = data.extra["val_last_temp"]
    return {"mae": mae(outputs, data.val_y), "rmse": rmse(outputs, data.val_y),
            "persistence_mae": mae(last, data.val_y)}


def score_anomaly(outputs: np.ndarray, data: Any, threshold: float | None) -> dict[str, float]:
    """ROC AUC, precision/recall/false-positive rate (%) at the manifest's threshold, recall per fault."""
    from models.datasets import ANOMALY_KINDS

    scores = outputs.reshape(-1)
    positive = data.val_y.astype(bool)
    if threshold is None:
        raise ValueError("an anomaly model needs a threshold")
    precision, recall = precision_recall(scores, positive, threshold)
    result = {"roc_auc": roc_auc(scores, positive), "precision": precision, "recall": recall,
              "false_positive_rate": float(np.mean(scores[~positive] > threshold) * 100.0)}
    kinds = data.extra["val_kind"]
    for i, kind in enumerate(ANOMALY_KINDS):
        result[f"recall_{kind}"] = float(np.mean(scores[kinds == i] > threshold) * 100.0)
    return result
