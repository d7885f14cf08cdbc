"""What ``spinal convert`` takes: :class:`ConvertOptions`, grouped by what each part is about.

- :class:`Source`: the model and how to import it (input shapes and names, output names, opset);
- :class:`Quantization`: the artifacts asked for, the calibration and validation data, the accuracy gate;
- :class:`Meaning`: what the manifest says the model means (task, labels, the input's sensor channels,
  window, layout, normalization and DSP chain);
- :class:`Output`: where the bundle goes and what it carries besides the model (name, golden vectors).

:func:`check_options` holds the rules an option breaks on its own, each error naming its flag. The rules of what
the manifest will say (task, normalization, the input's rate and window) are the manifest types' own: the options
build those parts and check them with :func:`device.schema.check_tree`, and a failing key is named as its flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.bundle import ARCHIVE_SUFFIX
from device.dsp import ChainError, parse_chain
from device.errors import BadInput
from device.manifest import (  # the name and layout rules are the manifest's own
    _LAYOUT_RE,
    _NAME_RE,
    TASK_KINDS,
    Normalization,
    Task,
    TensorSpec,
)
from device.schema import KeyPath, SchemaError, check_tree

FORMATS: dict[str, tuple[str, str, str]] = {  # key -> (format, precision, file)
    "onnx-fp32": ("onnx", "fp32", "model.fp32.onnx"),
    "onnx-int8": ("onnx", "int8", "model.int8.onnx"),
    "tflite-fp32": ("tflite", "fp32", "model.fp32.tflite"),
    "tflite-fp16": ("tflite", "fp16", "model.fp16.tflite"),
    "tflite-int8": ("tflite", "int8", "model.int8.tflite"),
    "tflite-int8-io": ("tflite", "int8-io", "model.int8-io.tflite"),
}
TASKS = TASK_KINDS  # the manifest's own task kinds
DROP_MEANING = {
    "accuracy": "top-1 accuracy points lost against fp32",
    "regression": "MAE increase in percent of fp32's MAE",
    "fidelity": "largest of 100 × (1 − cosine), 50 × relative RMS error² and % of decisions changed, against fp32",
    "task": "100 − agreement with fp32 in percent on the task measure given by --gate-measure",
}


@dataclass(frozen=True)
class Source:
    """The model (a path or ``package.module:factory``) and how it is imported."""

    model: str
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "" = the first input
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    opset: int = 17


@dataclass(frozen=True)
class Quantization:
    """The artifacts asked for, the data they are calibrated and validated on, and the accuracy gate."""

    formats: tuple[str, ...] = ()  # () = every format that applies
    calibration: Path | None = None
    calibration_method: str = "minmax"
    calibration_samples: int = 200
    validation: Path | None = None
    validation_samples: int | None = None  # None: every row (--max-validation caps it, and says so)
    max_drop: float = 1.0
    per_channel: bool = True
    remedies: bool = True
    keep_float: tuple[str, ...] = ()
    gate_measure: str | None = None  # map-iou:T | ctc[:BLANK] | detections[:T]: drop = 100 - that agreement


@dataclass(frozen=True)
class Meaning:
    """What the manifest says the model means: its task, and the first input's sensor semantics."""

    task: str | None = None
    task_output: str | None = None
    labels: tuple[str, ...] = ()
    activation: str | None = None
    targets: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    threshold: float | None = None
    channels: tuple[str, ...] = ()
    channel_units: tuple[str, ...] = ()
    sample_rate_hz: float | None = None
    window: int | None = None
    hop: int | None = None
    layout: str | None = None
    norm_mean: tuple[float, ...] = ()
    norm_std: tuple[float, ...] = ()
    preprocess: tuple[dict[str, Any], ...] = ()  # the DSP chain (device/dsp/), manifest form; with it (or an
    # .npz recording) --calibration/--validation are raw recordings and the normalization is computed


@dataclass(frozen=True)
class Output:
    """Where the bundle goes and what it carries besides the model."""

    out: Path
    name: str | None = None
    description: str = ""
    force: bool = False
    golden_count: int = 8
    latency_runs: int = 50
    seed: int = 0


_GROUPS = {"source": Source, "quantization": Quantization, "meaning": Meaning, "output": Output}


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``spinal convert`` takes, in four groups."""

    source: Source
    output: Output
    quantization: Quantization = Quantization()
    meaning: Meaning = Meaning()

    @classmethod
    def build(cls, **options: Any) -> ConvertOptions:
        """The options from flat keywords (``model=..., out=..., task=...``), each routed to the group that
        declares it; ``model`` and ``out`` are required. Raises TypeError for a keyword no group has."""
        groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
        for key, value in options.items():
            group = next((name for name, kind in _GROUPS.items() if key in _field_names(kind)), None)
            if group is None:
                raise TypeError(f"ConvertOptions.build: unknown option {key!r}")
            groups[group][key] = value
        return cls(**{name: kind(**groups[name]) for name, kind in _GROUPS.items()})


def _field_names(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


def wanted_formats(opts: ConvertOptions) -> tuple[str, ...]:
    """The artifact keys to make: ``--formats``, or every one."""
    return opts.quantization.formats or tuple(FORMATS)


def check_options(opts: ConvertOptions) -> tuple[str, ...]:
    """Check the options on their own (before any model is read); returns the artifact keys to make.
    The checks run in a fixed order, so the first problem found is always the same one."""
    q, m, o = opts.quantization, opts.meaning, opts.output
    unknown = [f for f in q.formats if f not in FORMATS]
    if unknown:
        raise BadInput(f"--formats: unknown {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    if q.calibration_method not in ("minmax", "entropy", "percentile"):
        raise BadInput(f"--calibration-method {q.calibration_method!r}: choose minmax, entropy or percentile")
    _check_task(m, o)
    from toolchain.validate import parse_gate_measure

    parse_gate_measure(q.gate_measure, m.threshold)
    if not (math.isfinite(q.max_drop) and q.max_drop >= 0):
        raise BadInput(f"--max-drop must be a number >= 0, got {q.max_drop}")
    if m.threshold is not None and not math.isfinite(m.threshold):
        raise BadInput(f"--threshold must be a finite number, got {m.threshold}")
    if o.golden_count < 1:
        raise BadInput(f"--golden must be >= 1, got {o.golden_count}")
    for option, value in (("--calibration-samples", q.calibration_samples),
                          ("--max-validation", q.validation_samples)):
        if value is not None and value < 1:
            raise BadInput(f"{option} must be >= 1, got {value}")
    _check_channels(m)
    _check_output(o)
    return wanted_formats(opts)


# The manifest keys the options fill in, and the flag that sets each (the longest prefix of a failing key wins).
_FLAG_OF_KEY: dict[KeyPath, str] = {
    ("task",): "--task", ("task", "kind"): "--task", ("task", "activation"): "--activation",
    ("task", "threshold"): "--threshold", ("task", "labels"): "--labels",
    ("normalization",): "--norm-mean/--norm-std", ("normalization", "mean"): "--norm-mean",
    ("normalization", "std"): "--norm-std", ("sample_rate_hz",): "--sample-rate", ("window",): "--window",
    ("hop",): "--hop", ("units",): "--channel-units", ("channels",): "--channels",
}


def _manifest_rules(m: Meaning) -> None:
    """What the options say about the manifest, checked by the manifest types themselves before any model is read."""
    parts: list[tuple[KeyPath, Any]] = []
    if m.task is not None or m.activation is not None:
        # class ids stand in for labels not given (the converter names them once it has read the model); an
        # activation alone means a classifier's
        parts.append((("task",), Task(kind=m.task or "classification", output="output", labels=m.labels or ("0",),
                                      activation=m.activation, threshold=m.threshold)))
    norm = Normalization(mean=m.norm_mean, std=m.norm_std) if m.norm_mean or m.norm_std else None
    if norm is not None:
        parts.append((("normalization",), norm))
    parts.append(((), TensorSpec(name="input", shape=(1,), channels=m.channels, sample_rate_hz=m.sample_rate_hz,
                                 window=m.window, hop=m.hop, normalization=norm, units=m.channel_units)))
    for prefix, part in parts:
        try:
            check_tree(part, prefix)
        except SchemaError as exc:
            keys = tuple(k for k in exc.path if isinstance(k, str))
            flag = next((_FLAG_OF_KEY[keys[:n]] for n in range(len(keys), 0, -1) if keys[:n] in _FLAG_OF_KEY),
                        "the options")
            raise BadInput(f"{flag}: {exc.detail}") from None


def _check_task(m: Meaning, o: Output) -> None:
    if o.name and not _NAME_RE.match(o.name):
        raise BadInput(f"--name {o.name!r}: use 1-128 letters, digits, '.', '_' or '-' (starting with a letter "
                       "or digit)")
    if m.layout is not None and (not _LAYOUT_RE.match(m.layout) or len(set(m.layout)) != len(m.layout)):
        raise BadInput(f"--layout {m.layout!r}: give distinct capital letters such as NTC, NCT or NCHW")
    if m.threshold is not None and m.task in ("classification", "regression", "features"):
        raise BadInput(f"--threshold has no meaning for --task {m.task} (it is for score and anomaly)")


def _check_channels(m: Meaning) -> None:
    if m.channel_units and not m.channels:
        raise BadInput("--channel-units needs --channels (the units are the channels')")
    _manifest_rules(m)
    try:
        parse_chain(list(m.preprocess))
    except ChainError as exc:
        raise BadInput(exc.where("--preprocess")) from None


def _check_output(o: Output) -> None:
    if o.out.exists() and not o.force:
        raise BadInput(f"{o.out}: already exists; remove it or pass --force")
    if o.out.exists() and o.out.is_dir() and o.out.suffix != ARCHIVE_SUFFIX and any(o.out.iterdir()) and \
            not (o.out / "manifest.json").exists():
        raise BadInput(f"{o.out}: is a non-empty directory that is not a bundle; refusing to replace it")


def default_name(model: str) -> str:
    """The bundle name when ``--name`` is not given: the model file's stem, or a factory's module."""
    import re

    # pkg.mod:factory is named after its module ("mod"), not the factory every module may call "build"
    stem = model.split(":")[0].split(".")[-1] if ":" in model and not Path(model).exists() else Path(model).stem
    name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).strip("-.") or "model"
    return name[:128]
