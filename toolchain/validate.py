"""Running artifacts on real runtimes, measuring them, and the accuracy gate's arithmetic.

Runners take and return LOGICAL tensors (the manifest's layout and float dtype): they quantize
int8 inputs and dequantize int8 outputs with the scale/zero point recorded for the artifact, and
transpose to and from the artifact's recorded layout. So the figures measured here also prove
that what the manifest records is what the device needs.

Metrics, and what ``drop`` means for ``--max-drop`` (points):

- labels → top-1 accuracy in percent; drop = fp32 accuracy − artifact accuracy.
- targets → MAE and RMSE; drop = MAE increase in percent of fp32's MAE.
- neither → against fp32's outputs: drop = the largest of 100 × (1 − cosine), 50 × (RMS error / RMS of
  fp32's outputs)² (equal to the first for noise, but it also counts a scaled or offset output), and the
  percent of samples whose decision (top-1 class, side of the threshold) differs from fp32's.
- a task measure (``--gate-measure``: ``map-iou:T`` for probability maps, ``ctc`` for CTC sequences,
  ``detections[:T]`` for a score that fires on rare events) → drop = 100 − agreement with fp32's outputs in
  percent (mean IoU of the maps thresholded at T; samples whose decoded sequence is identical; the lower of
  the decisions equal and fp32's detections kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput, BundleError, ModelFileError
from device.manifest import ArtifactTensor
from device.runtime.parity import DecisionRule
from toolchain.calibration import DataSet, InputSpec


def _ort_dtype(text: str) -> str:
    inner = text[len("tensor("):-1] if text.startswith("tensor(") else text
    return {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64", "int32": "int32",
            "int8": "int8", "uint8": "uint8", "bool": "bool", "int16": "int16"}.get(inner, inner)


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_io(path: Path) -> tuple[tuple[InputSpec, ...], tuple[InputSpec, ...]]:
    """Inputs (fixed shapes) and outputs (shapes from one run on zeros) of an ONNX file."""
    sess = onnx_session(path)
    inputs = []
    for i in sess.get_inputs():
        if not all(isinstance(d, int) and d > 0 for d in i.shape):
            raise ValueError(f"input {i.name} still has a dynamic shape {i.shape}")
        inputs.append(InputSpec(i.name, tuple(int(d) for d in i.shape), _ort_dtype(i.type)))
    feeds = {s.name: np.zeros(s.shape, dtype=s.dtype) for s in inputs}
    results = sess.run(None, feeds)
    outputs = tuple(InputSpec(o.name, tuple(int(d) for d in r.shape), _ort_dtype(o.type))
                    for o, r in zip(sess.get_outputs(), results, strict=True))
    return tuple(inputs), outputs


class Runner:
    """One artifact, fed and read in logical form by the device's own runtime code.

    This is :class:`device.runtime.model.Model` (the adapters that quantize, transpose and check
    inputs on the device) over the device backend's session, on the CPU with one thread. So the
    accuracy gate, the latency figures and the golden vectors all come from the code a device runs.
    The TFLite files here were just made by the converter, so they are loaded without the device's
    crash-isolating child-process probe.
    """

    def __init__(self, path: Path, fmt: str, inputs: tuple[ArtifactTensor, ...], outputs: tuple[ArtifactTensor, ...],
                 logical_in: tuple[InputSpec, ...], logical_out: tuple[InputSpec, ...],
                 logical_layouts: dict[str, str | None]) -> None:
        from device.manifest import Artifact
        from device.runtime.delegates import parse_delegate
        from device.runtime.model import LogicalTensor, Model

        cpu = parse_delegate("cpu")
        if fmt == "onnx":
            from device.runtime import onnx as backend
        else:
            from device.modelfile import tflite_interpreter_class

            _, runtime = tflite_interpreter_class()
            if runtime == "ai-edge-litert":
                from device.runtime import litert as backend  # type: ignore[no-redef]
            else:
                from device.runtime import tflite as backend  # type: ignore[no-redef]
        session = backend.open_session(path, 1, cpu)

        def logical(specs: tuple[InputSpec, ...]) -> tuple[LogicalTensor, ...]:
            return tuple(LogicalTensor(s.name, tuple(s.shape), np.dtype(s.dtype), logical_layouts.get(s.name))
                         for s in specs)

        artifact = Artifact(path=path.name, format=fmt, precision="", sha256="", bytes=path.stat().st_size,
                            inputs=inputs, outputs=outputs)
        try:
            self.model = Model(session, logical(logical_in), logical(logical_out), artifact, "", path.name)
        except BundleError as exc:  # the file made does not fit the logical tensors: this artifact failed
            session.close()
            raise ModelFileError(f"the made file does not match the model's tensors: {exc}") from None
        except Exception:
            session.close()
            raise
        self.session = session
        self.logical_in = logical_in

    def prepare(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Logical inputs converted to what the file takes (layout, dtype, quantization), as the device does."""
        return [a.to_artifact(feeds[a.name]) for a in self.model._in_by_position]

    def invoke(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """One raw inference on prepared inputs; the file's own outputs."""
        return self.session.run(prepared)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(feeds)

    def close(self) -> None:
        self.model.close()


def run_all(fn: Any, data: DataSet, inputs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    """Every sample through ``fn``; outputs stacked on a new first axis."""
    collected: dict[str, list[np.ndarray]] = {}
    for i in range(data.count):
        for name, value in fn(data.sample(i, inputs)).items():
            collected.setdefault(name, []).append(np.asarray(value))
    return {name: np.stack(values) for name, values in collected.items()}


def latency_us(runner: Runner, feeds: dict[str, np.ndarray], runs: int = 50) -> float:
    """Median wall time of one raw inference (inputs prepared beforehand), in microseconds, one thread."""
    prepared = runner.prepare(feeds)
    for _ in range(3):
        runner.invoke(prepared)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.invoke(prepared)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


@dataclass
class Metrics:
    """How one artifact did on the validation data."""

    kind: str  # accuracy | regression | fidelity | task
    values: dict[str, float] = field(default_factory=dict)
    drop: float = 0.0

    def headline(self) -> str:
        if self.kind == "accuracy":
            return f"top-1 {self.values['accuracy']:.2f}%"
        if self.kind == "regression":
            return f"MAE {self.values['mae']:.4g}"
        if self.kind == "task":
            return f"task agreement {self.values['task_agreement']:.2f}%, cos {self.values['cosine']:.5f}"
        return f"cos {self.values['cosine']:.5f}, rel. error {100 * self.values.get('rel_rms', 0.0):.2f}%"


def _flat(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    value = outputs[name]
    return value.reshape(value.shape[0], -1).astype(np.float64)


def fidelity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """How an artifact's outputs compare with the reference (fp32) outputs, worst output first.

    - ``cosine``: one cosine over every value of every sample (blind to scale: a score that halves keeps 1.0);
    - ``rel_rms``: RMS of the error over the RMS of the reference, which counts scale and offset errors;
    - ``scale``: the least-squares factor from reference to artifact (1.0 when nothing is scaled);
    - ``max_abs``: the largest absolute difference.
    """
    cos_all, max_abs, rel, scale = [], 0.0, 0.0, 1.0
    for name in reference:
        a, b = _flat(outputs, name), _flat(reference, name)
        if not np.issubdtype(reference[name].dtype, np.floating):
            same = float(np.mean(np.all(a == b, axis=1)))
            cos_all.append(same)
            rel = max(rel, 1.0 - same)
            continue
        a, b = a.ravel(), b.ravel()
        den = float(np.linalg.norm(a) * np.linalg.norm(b))
        cos_all.append(float(a @ b) / den if den > 0 else (1.0 if np.array_equal(a, b) else 0.0))
        max_abs = max(max_abs, float(np.max(np.abs(a - b))) if a.size else 0.0)
        energy = float(b @ b)
        if energy > 0:
            rel = max(rel, float(np.linalg.norm(a - b)) / np.sqrt(energy))
            k = float(a @ b) / energy
            scale = k if abs(k - 1.0) > abs(scale - 1.0) else scale
        elif a.size and np.any(a != 0):
            rel, scale = max(rel, 1.0), 0.0
    return {"cosine": float(min(cos_all)) if cos_all else 1.0, "rel_rms": rel, "scale": scale, "max_abs": max_abs}


def agreement(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], rule: DecisionRule) -> float:
    """Percent of samples on which the artifact makes the reference's decision (top-1 class, threshold side)."""
    a, b = _flat(outputs, rule.output), _flat(reference, rule.output)
    if not a.size:
        return 100.0
    if rule.kind == "top-1":
        return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)) * 100.0)
    threshold = float(rule.threshold or 0.0)
    return float(np.mean(np.all((a > threshold) == (b > threshold), axis=1)) * 100.0)


GATE_MEASURES = ("map-iou:THRESHOLD", "ctc", "ctc:BLANK", "detections", "detections:THRESHOLD")


@dataclass(frozen=True)
class TaskMeasure:
    """A task's own measure for the gate: ``map-iou`` (threshold), ``ctc`` (blank class id) or
    ``detections`` (threshold; ``None`` until the task's ``--threshold`` fills it in)."""

    kind: str
    threshold: float | None = 0.5
    blank: int = 0

    def describe(self) -> str:
        if self.kind == "map-iou":
            return f"mean IoU of the maps thresholded at {self.threshold:g}"
        if self.kind == "detections":
            return f"the lower of decisions equal and fp32's detections kept, at {self.threshold:g}"
        return f"CTC-decoded sequences identical (blank {self.blank})"


def parse_gate_measure(text: str | None, task_threshold: float | None = None) -> TaskMeasure | None:
    """``map-iou:0.3``, ``ctc`` (``ctc:BLANK``) or ``detections`` (``detections:T``; T defaults to the task's
    ``--threshold``) → a :class:`TaskMeasure`; one-line BadInput otherwise."""
    if text is None:
        return None
    kind, _, arg = text.partition(":")
    try:
        if (kind == "map-iou" and arg) or (kind == "detections" and (arg or task_threshold is not None)):
            threshold = float(arg) if arg else task_threshold
            if threshold is not None and np.isfinite(threshold):
                return TaskMeasure(kind, threshold=threshold)
        elif kind == "ctc":
            return TaskMeasure("ctc", blank=int(arg) if arg else 0)
    except ValueError:
        pass
    if kind == "detections" and not arg:
        raise BadInput("--gate-measure detections: give the score's --threshold, or detections:THRESHOLD")
    raise BadInput(f"--gate-measure {text!r}: give map-iou:THRESHOLD (probability maps, e.g. map-iou:0.3), ctc "
                   "(CTC sequences, blank class 0; ctc:BLANK for another) or detections[:THRESHOLD] (a score "
                   "that fires on rare events)")


def _ctc_decode(steps: np.ndarray, blank: int) -> tuple[int, ...]:
    """Best-path CTC decoding of one sample's class ids per timestep: repeats collapsed, blanks dropped."""
    out: list[int] = []
    previous = -1
    for k in steps.tolist():
        if k != previous and k != blank:
            out.append(int(k))
        previous = k
    return tuple(out)


def task_agreement(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], output: str,
                   measure: TaskMeasure) -> float:
    """Agreement with the reference on the task's own measure, in percent (see :class:`TaskMeasure`)."""
    a, b = outputs[output], reference[output]
    if measure.kind == "detections":
        return _detections_kept(a, b, output, float(measure.threshold or 0.0))
    if measure.kind == "map-iou":
        ma = a.reshape(a.shape[0], -1) > measure.threshold
        mb = b.reshape(b.shape[0], -1) > measure.threshold
        union = np.sum(ma | mb, axis=1)
        inter = np.sum(ma & mb, axis=1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        return float(np.mean(iou) * 100.0) if iou.size else 100.0
    if a.ndim < 3:
        raise BadInput(f"--gate-measure ctc: output {output!r} has shape {list(a.shape[1:])}; CTC needs "
                       "(..., timesteps, classes) — pick the output with --task-output")
    sa = np.argmax(a.reshape(a.shape[0], -1, a.shape[-1]), axis=-1)
    sb = np.argmax(b.reshape(b.shape[0], -1, b.shape[-1]), axis=-1)
    same = [_ctc_decode(x, measure.blank) == _ctc_decode(y, measure.blank) for x, y in zip(sa, sb, strict=True)]
    return float(np.mean(same) * 100.0) if same else 100.0


def _detections_kept(a: np.ndarray, b: np.ndarray, output: str, threshold: float) -> float:
    """The lower of: decisions (each score's side of ``threshold``) equal to the reference's, and the
    reference's detections the artifact keeps. A rare-event score (a wake word fires on 3 % of windows)
    could drop every detection and still agree on 97 % of decisions; recall keeps that file out."""
    da, db = a.reshape(-1) > threshold, b.reshape(-1) > threshold
    positives = int(np.sum(db))
    if positives == 0:
        raise BadInput(f"--gate-measure detections: fp32 scores no validation sample above {threshold:g} on "
                       f"output {output!r}; the validation data needs examples of the event (or a lower "
                       "threshold)")
    agree = float(np.mean(da == db) * 100.0)
    kept = float(np.sum(da & db) / positives * 100.0)
    return min(agree, kept)


def fidelity_drop(values: dict[str, float]) -> float:
    """The gate's figure without labels or targets, in points (see DROP_MEANING in convert)."""
    drop = max(100.0 * (1.0 - values["cosine"]), 50.0 * values["rel_rms"] ** 2)
    if "agreement" in values:
        drop = max(drop, 100.0 - values["agreement"])
    return drop


def score(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], data: DataSet, task_output: str,
          baseline: Metrics | None, rule: DecisionRule | None = None, measure: TaskMeasure | None = None) -> Metrics:
    """Metrics of one artifact's outputs; ``baseline`` (fp32's metrics) turns them into a drop.

    ``rule`` is the task's decision (top-1, threshold): the percent of samples deciding as fp32 does
    is reported, and without labels or targets it bounds the drop too. ``measure`` (the user's
    ``--gate-measure``), without labels or targets, makes the drop 100 − its agreement.
    """
    fid = fidelity(outputs, reference)
    if rule is not None:
        fid["agreement"] = agreement(outputs, reference, rule)
    if data.labels is not None:
        logits = _flat(outputs, task_output)
        if data.labels.size and (data.labels.min() < 0 or data.labels.max() >= logits.shape[1]):
            bad = int(data.labels.max() if data.labels.max() >= logits.shape[1] else data.labels.min())
            raise BadInput(f"{data.source}: 'labels' holds class id {bad}, but output {task_output!r} has "
                           f"{logits.shape[1]} classes (ids 0..{logits.shape[1] - 1})")
        acc = float(np.mean(np.argmax(logits, axis=1) == data.labels) * 100.0)
        m = Metrics("accuracy", {"accuracy": acc, **fid})
        m.drop = 0.0 if baseline is None else baseline.values["accuracy"] - acc
        return m
    if data.targets is not None:
        pred = _flat(outputs, task_output)
        tgt = data.targets.reshape(len(data.targets), -1)
        if pred.shape != tgt.shape:
            raise BadInput(f"{data.source}: 'targets' has {tgt.shape[1]} value(s) a sample but output "
                           f"{task_output!r} gives {pred.shape[1]}; save one row of {pred.shape[1]} a sample "
                           "(or pick the output with --task-output)")
        err = pred - tgt
        m = Metrics("regression", {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                                   **fid})
        if baseline is not None:
            base = baseline.values["mae"]
            m.drop = 100.0 * (m.values["mae"] - base) / max(base, 1e-12)
        return m
    if measure is not None:
        fid["task_agreement"] = task_agreement(outputs, reference, task_output, measure)
        m = Metrics("task", fid)
        m.drop = 100.0 - fid["task_agreement"]
        return m
    m = Metrics("fidelity", fid)
    m.drop = fidelity_drop(fid)
    return m
