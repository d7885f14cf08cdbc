"""The manifest built purely from what the conversion found: tensor specs, the task, the report, the manifest.

Nothing here reads or writes files; what a step would say to the user comes back as notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from device import __version__
from device.errors import BadInput
from device.manifest import Artifact, Attachment, Golden, Manifest, Normalization, Task, TensorSpec
from toolchain.calibration import DataSet, InputSpec
from toolchain.options import DROP_MEANING, TASKS, Meaning


def tensor_specs(m: Meaning, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...],
                 layouts: dict[str, str | None], task_output: str, sensor_spec: TensorSpec | None
                 ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The manifest's inputs and outputs; the first input carries the sensor semantics."""
    norm = Normalization(mean=m.norm_mean, std=m.norm_std) if m.norm_mean else None
    ins = []
    for i, s in enumerate(inputs):
        first = i == 0
        if first and sensor_spec is not None:
            ins.append(sensor_spec)
            continue
        ins.append(TensorSpec(
            name=s.name, shape=s.shape, dtype=s.dtype, layout=layouts.get(s.name),
            channels=m.channels if first else (), sample_rate_hz=m.sample_rate_hz if first else None,
            window=m.window if first else None, hop=m.hop if first else None,
            normalization=norm if first else None, units=m.channel_units if first else (),
        ))
    outs = tuple(TensorSpec(name=s.name, shape=s.shape, dtype=s.dtype, layout=layouts.get(s.name),
                            units=m.units if s.name == task_output else ()) for s in outputs)
    return tuple(ins), outs


@dataclass(frozen=True)
class Evidence:
    """What the task is decided from besides the options: fp32's outputs on the validation data."""

    outputs: tuple[InputSpec, ...]
    task_output: str
    ref: dict[str, np.ndarray]
    val: DataSet
    label_names: tuple[str, ...] = ()


def build_task(m: Meaning, ev: Evidence) -> tuple[Task, list[str]]:
    """The manifest's task (``--task`` or guessed) and the notes that say what was assumed."""
    notes: list[str] = []
    out = next(o for o in ev.outputs if o.name == ev.task_output)
    kind = m.task or guess_task(m, ev, out, notes)
    if kind == "features":
        return Task(kind="features", output=out.name), notes
    if kind == "classification":
        return _classification(m, ev, out, notes), notes
    size = int(np.prod(out.shape))
    if kind == "regression":
        if m.targets and len(m.targets) != size:
            raise BadInput(f"--targets gives {len(m.targets)} names but output {out.name!r} holds {size} value(s)")
        if m.units and len(m.units) not in (1, size):
            raise BadInput(f"--units gives {len(m.units)} units but output {out.name!r} holds {size} "
                           f"value(s) (give 1 or {size})")
        return Task(kind="regression", output=out.name, targets=m.targets, units=m.units), notes
    if kind == "score":
        if size != 1:
            raise BadInput(f"--task score needs an output with one score, but {out.name!r} has shape "
                           f"{list(out.shape)}; pick it with --task-output")
        return Task(kind="score", output=out.name, threshold=m.threshold, score=out.name), notes
    if m.threshold is None:
        raise BadInput("--task anomaly needs --threshold")
    if size != 1:
        raise BadInput(f"--task anomaly needs an output with one score, but {out.name!r} has shape "
                       f"{list(out.shape)}; pick it with --task-output")
    return Task(kind="anomaly", output=out.name, threshold=m.threshold, score=out.name), notes


def _classification(m: Meaning, ev: Evidence, out: InputSpec, notes: list[str]) -> Task:
    labels = m.labels or ev.label_names
    classes = out.shape[-1] if out.shape else 1
    if not labels:
        labels = tuple(str(i) for i in range(classes))
        notes.append("no --labels given: class ids stand in for class names")
    elif len(labels) != classes:
        raise BadInput(f"--labels gives {len(labels)} names but output {out.name!r} has {classes} classes")
    activation = m.activation or guess_activation(ev)
    return Task(kind="classification", output=out.name, labels=labels, activation=activation)


def guess_task(m: Meaning, ev: Evidence, out: InputSpec, notes: list[str]) -> str:
    """The task when ``--task`` is not given, guessed conservatively and said in a note.

    Labels (given or in the validation data) mean classification, targets regression, a threshold
    anomaly. Otherwise the reference outputs decide: one value in [0, 1] is a ``score``, one other
    value ``regression``; several values are ``classification`` only when they are probabilities
    (each row in [0, 1], summing to 1): a mel extractor or an embedding is ``features``, not a
    32- or 96-class classifier.
    """
    if m.labels or ev.val.labels is not None:
        return "classification"
    if m.targets or ev.val.targets is not None:
        return "regression"
    if m.threshold is not None:
        return "anomaly"
    values = ev.ref[out.name].reshape(ev.val.count, -1).astype(np.float64)
    in_unit = bool(np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6))
    if values.shape[1] == 1:
        kind = "score" if in_unit else "regression"
    elif in_unit and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        kind = "classification"
    else:
        kind = "features"
    notes.append(f"task guessed from the outputs: {kind} on {out.name!r} (say --task {'|'.join(TASKS)} to override)")
    return kind


def guess_activation(ev: Evidence) -> str:
    """``probabilities`` when every row of the task output is in [0, 1] and sums to 1, else ``logits``."""
    values = ev.ref[ev.task_output].reshape(ev.val.count, -1).astype(np.float64)
    probs = bool(np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6)
                 and np.allclose(values.sum(axis=1), 1.0, atol=1e-3))
    return "probabilities" if probs else "logits"


@dataclass(frozen=True)
class ReportFacts:
    """What the report says besides the artifacts: where the model and the data came from, the gate."""

    name: str
    model: str
    source_kind: str
    source_parity: dict[str, Any] | None
    calibration: dict[str, Any]
    validation: dict[str, Any]
    metric: str
    max_drop: float


def build_report(facts: ReportFacts, artifacts: dict[str, Any], rejected: dict[str, Any], failed: dict[str, Any],
                 timings: dict[str, float], elapsed: float, notes: list[str]) -> dict[str, Any]:
    """The conversion report (``report.json``), uncleaned."""
    return {
        "name": facts.name,
        "source": {"model": facts.model, "kind": facts.source_kind, "parity_vs_fp32_onnx": facts.source_parity},
        "calibration": facts.calibration,
        "validation": facts.validation,
        "metric": facts.metric,
        "max_drop": facts.max_drop,
        "drop_meaning": DROP_MEANING[facts.metric],
        "artifacts": artifacts,
        "rejected": rejected,
        "failed": failed,
        "timings_s": timings,
        "conversion_seconds": round(elapsed, 2),
        "notes": list(dict.fromkeys(notes)),
    }


@dataclass(frozen=True)
class BundleContents:
    """The files a bundle holds, described: artifacts, golden vectors, attachments."""

    artifacts: tuple[Artifact, ...]
    golden: Golden
    attachments: tuple[Attachment, ...]


def build_manifest(name: str, created: str, specs: tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]],
                   task: Task, contents: BundleContents, report: dict[str, Any], description: str,
                   notes: list[str], versions: dict[str, str]) -> Manifest:
    """The manifest of a bundle: a pure function of what the conversion found."""
    inputs, outputs = specs
    return Manifest(
        format_version=1, name=name, created=created, inputs=inputs, outputs=outputs, task=task,
        artifacts=contents.artifacts, golden=contents.golden, report=report, attachments=contents.attachments,
        description=description, producer={"tool": "spinal convert", "version": __version__, **versions},
        notes=tuple(dict.fromkeys(notes)),
    )
