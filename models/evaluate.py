"""Run every artifact of a bundle on validation data and score it (shared by the build and the tests).

This is an evaluation harness, not the device runtime: it loads each artifact with the real
runtime (onnxruntime for ``.onnx``, LiteRT for ``.tflite``), quantizes inputs and dequantizes
outputs of full-integer artifacts with the parameters the manifest records, and adapts the
logical layout (``NTC``) to an artifact that declares another one (for example ``NCT``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.bundle import Bundle
from device.manifest import Artifact, ArtifactTensor, TensorSpec

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
# Running one artifact


def _permutation(logical: str | None, actual: str | None) -> tuple[int, ...] | None:
    """Axes that turn the logical layout into the artifact's, or None when they agree."""
    if not logical or not actual or logical == actual:
        return None
    if sorted(logical) != sorted(actual):
        raise ValueError(f"cannot adapt layout {logical} to {actual}")
    return tuple(logical.index(axis) for axis in actual)


def _quantize(x: np.ndarray, t: ArtifactTensor) -> np.ndarray:
    if t.dtype not in ("int8", "uint8") or t.quantization is None:
        return x.astype(t.dtype)
    q = t.quantization
    info = np.iinfo(t.dtype)
    values = np.round(x / np.float32(q.scale[0]) + q.zero_point[0])
    return np.clip(values, info.min, info.max).astype(t.dtype)


def _dequantize(y: np.ndarray, t: ArtifactTensor | None) -> np.ndarray:
    if t is None or t.quantization is None or y.dtype not in (np.int8, np.uint8):
        return y.astype(np.float32)
    q = t.quantization
    return ((y.astype(np.float32) - q.zero_point[0]) * np.float32(q.scale[0])).astype(np.float32)


@dataclass
class Runner:
    """One loaded artifact that maps logical float32 inputs (batch first) to float32 outputs."""

    artifact: Artifact
    spec_in: TensorSpec
    spec_out: TensorSpec
    _call: Any
    batch: int | None  # the artifact's fixed batch size (None: any)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch of logical inputs, run in the artifact's own batch size."""
        step = self.batch or len(x)
        outs = [self._call(x[i : i + step]) for i in range(0, len(x), step)]
        return np.concatenate(outs, axis=0)


def load_runner(bundle: Bundle, artifact: Artifact) -> Runner:
    """Load ``artifact`` from ``bundle`` with its real runtime."""
    spec_in, spec_out = bundle.manifest.inputs[0], _task_output(bundle)
    tin = artifact.inputs[0] if artifact.inputs else None
    tout = next((t for t in artifact.outputs if t.name == spec_out.name), artifact.outputs[0] if artifact.outputs
                else None)
    perm = _permutation(spec_in.layout, tin.layout if tin else None)
    path = str(bundle.path_of(artifact.path))
    if artifact.format == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        meta_in = session.get_inputs()[0]
        out_names = [o.name for o in session.get_outputs()]
        out_index = out_names.index(spec_out.name) if spec_out.name in out_names else 0
        batch = meta_in.shape[0] if isinstance(meta_in.shape[0], int) else None

        def call(x: np.ndarray) -> np.ndarray:
            feed = x if perm is None else x.transpose(perm)
            if tin is not None:
                feed = _quantize(feed, tin)
            y = session.run(None, {meta_in.name: feed})[out_index]
            return _dequantize(y, tout)

        return Runner(artifact, spec_in, spec_out, call, batch)

    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    din = interp.get_input_details()[0]
    douts = interp.get_output_details()
    dout = next((d for d in douts if d["name"] == spec_out.name), douts[0])
    batch = int(din["shape"][0])

    def call_tflite(x: np.ndarray) -> np.ndarray:
        feed = x if perm is None else x.transpose(perm)
        if din["dtype"] in (np.int8, np.uint8):
            scale, zero = din["quantization"]
            info = np.iinfo(din["dtype"])
            feed = np.clip(np.round(feed / scale + zero), info.min, info.max).astype(din["dtype"])
        else:
            feed = feed.astype(din["dtype"])
        interp.set_tensor(din["index"], feed)
        interp.invoke()
        y = interp.get_tensor(dout["index"])
        if dout["dtype"] in (np.int8, np.uint8):
            scale, zero = dout["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32)

    return Runner(artifact, spec_in, spec_out, call_tflite, batch)


def _task_output(bundle: Bundle) -> TensorSpec:
    name = bundle.manifest.task.output
    return next(o for o in bundle.manifest.outputs if o.name == name)


def latency_us(runner: Runner, sample: np.ndarray, repeats: int = 200) -> float:
    """Median wall time of one single-sample inference, in microseconds (after a warm-up)."""
    one = sample[:1]
    for _ in range(10):
        runner(one)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner(one)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


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
