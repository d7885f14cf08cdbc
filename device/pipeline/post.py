"""Post-processing: one model output per window becomes a :class:`Prediction` (softmax and labels, a
confidence threshold, smoothing over the last ``k`` windows, emit every window or only on change)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from device.dsp import Array
from device.errors import BadInput
from device.manifest import Task, TensorSpec

EmitMode = Literal["every", "change"]
EMIT_MODES: tuple[EmitMode, ...] = get_args(EmitMode)



def softmax(x: Array, axis: int = -1) -> Array:
    """Numerically stable softmax."""
    z = np.asarray(x, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    out: Array = e / np.sum(e, axis=axis, keepdims=True)
    return out


@dataclass(frozen=True)
class PostprocessConfig:
    """What a model output becomes: the config's ``[postprocess]`` table (the field metadata bounds it there)."""

    labels: tuple[str, ...] = ()
    threshold: float | None = None
    smoothing: int = field(default=1, metadata={"min": 1, "max": 1000})
    emit: EmitMode = "every"
    unknown_label: str = "unknown"


FEATURES_IN_FULL = 64  # a features output up to this size is published value by value, else summarised


@dataclass(frozen=True)
class Prediction:
    """What one window amounted to after post-processing.

    ``label`` is the reported class (classification), ``"anomaly"``/``"normal"`` (anomaly),
    ``"detected"``/``"clear"`` (score with a threshold) or ``None`` (regression, features, score without
    a threshold); ``values`` hold the smoothed per-class probabilities, regression targets, the score,
    or the feature vector (``f0``, ``f1``...; a summary — mean, std, min, max, L2 norm — when it holds
    more than :data:`FEATURES_IN_FULL` values); ``emit`` says whether the emit policy wants it sent.
    """

    label: str | None
    score: float | None
    values: dict[str, float]
    emit: bool
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "score": self.score, "values": self.values}
        return {k: v for k, v in out.items() if v is not None}


def _output_names(task: Task, output: TensorSpec, settings: PostprocessConfig) -> tuple[str, ...]:
    """The names of the output's values for ``task`` (a features output too long to publish: none), after
    checking that the ``[postprocess]`` settings have a meaning for it (:class:`BadInput` naming the key)."""
    size = int(np.prod(output.shape))
    if task.kind == "classification":
        labels = settings.labels or task.labels
        if len(labels) != size:
            src = "postprocess.labels" if settings.labels else "the manifest's task.labels"
            raise BadInput(f"{src}: {len(labels)} labels for a model output of {size} classes")
        names: tuple[str, ...] = tuple(labels)
        if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
            raise BadInput(f"postprocess.threshold: a class probability threshold must be in [0, 1], "
                           f"got {settings.threshold}")
    elif task.kind == "regression":
        if task.targets and len(task.targets) != size:
            raise BadInput(f"the manifest's task.targets: {len(task.targets)} names for a model output of "
                           f"{size} values")
        names = tuple(task.targets) or tuple(f"y{i}" for i in range(size))
        if settings.threshold is not None:
            raise BadInput("postprocess.threshold: has no meaning for a regression model; remove it")
        if settings.emit == "change":
            raise BadInput('postprocess.emit: "change" needs a class or anomaly model; use "every"')
        if settings.labels:
            raise BadInput("postprocess.labels: a regression model has no labels; remove them")
    elif task.kind == "features":
        names = tuple(f"f{i}" for i in range(size)) if size <= FEATURES_IN_FULL else ()
        if settings.threshold is not None:
            raise BadInput("postprocess.threshold: has no meaning for a features model; remove it")
        if settings.emit == "change":
            raise BadInput('postprocess.emit: "change" needs a class, score or anomaly model; use "every"')
        if settings.labels:
            raise BadInput("postprocess.labels: a features model has no labels; remove them")
    else:
        if size != 1:
            raise BadInput(f"output {output.name!r}: a{'n' if task.kind == 'anomaly' else ''} {task.kind} model "
                           f"outputs one score, but its shape {list(output.shape)} holds {size} values")
        names = (task.score or "score",)
        if settings.labels:
            raise BadInput(f"postprocess.labels: a{'n' if task.kind == 'anomaly' else ''} {task.kind} model has "
                           "no labels; remove them")
    return names


class PostProcessor:
    """Turns one model output per window into a :class:`Prediction` (stateful: smoothing, change)."""

    def __init__(self, task: Task, output: TensorSpec, settings: PostprocessConfig) -> None:
        self.task = task
        self.settings = settings
        if settings.emit not in EMIT_MODES:
            raise BadInput(f"postprocess.emit: {settings.emit!r} is not one of {', '.join(EMIT_MODES)}")
        if settings.smoothing < 1:
            raise BadInput(f"postprocess.smoothing: must be >= 1, got {settings.smoothing}")
        self.names = _output_names(task, output, settings)
        self._history: deque[Array] = deque(maxlen=settings.smoothing)
        self._last_label: str | None = None
        self._emitted_any = False

    @property
    def threshold(self) -> float | None:
        if self.task.kind in ("anomaly", "score"):
            return self.settings.threshold if self.settings.threshold is not None else self.task.threshold
        return self.settings.threshold

    def reset(self) -> None:
        """Forget the smoothing history (after a model swap or a long gap)."""
        self._history.clear()

    def __call__(self, output: Array) -> Prediction:
        raw = np.asarray(output, dtype=np.float64).reshape(-1)
        if self.task.kind == "classification" and self.task.activation == "logits":
            raw = softmax(raw)
        self._history.append(raw)
        smoothed = np.mean(np.stack(self._history), axis=0)
        if self.task.kind == "features" and not self.names:  # too long to publish value by value
            values = {"mean": float(np.mean(smoothed)), "std": float(np.std(smoothed)), "min": float(np.min(smoothed)),
                      "max": float(np.max(smoothed)), "l2": float(np.linalg.norm(smoothed)),
                      "size": float(smoothed.size)}
        else:
            values = {name: float(v) for name, v in zip(self.names, smoothed, strict=True)}
        label: str | None
        score: float | None
        if self.task.kind == "classification":
            best = int(np.argmax(smoothed))
            score = float(smoothed[best])
            label = self.names[best]
            if self.threshold is not None and score < self.threshold:
                label = self.settings.unknown_label
        elif self.task.kind == "anomaly":
            score = float(smoothed[0])
            threshold = self.threshold
            label = "anomaly" if threshold is not None and score > threshold else "normal"
        elif self.task.kind == "score":
            score = float(smoothed[0])
            threshold = self.threshold
            label = None if threshold is None else "detected" if score > threshold else "clear"
        else:
            label, score = None, None
        changed = label != self._last_label or not self._emitted_any
        emit = self.settings.emit == "every" or changed
        if emit:
            self._emitted_any = True
            self._last_label = label
        return Prediction(label=label, score=score, values=values, emit=emit, changed=changed)
