"""The half of every reference model's build that comes after training.

``finish`` writes the calibration and validation sets, converts the fp32 ONNX file with Spinal's
own converter (:func:`toolchain.convert.convert`, the code behind ``spinal convert``) into the
committed ``models/<name>/<name>.spinal`` bundle, scores every artifact of that bundle on the
validation data through the device runtime (``device.runtime.load_model``), and writes
``metrics.json`` and ``MODEL_CARD.md``.
``tests/models`` re-scores the committed bundle and compares it with ``metrics.json`` and the card.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle import file_digest, open_bundle
from models import evaluate
from models.prepare import Prepared

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
INPUT_NAME = "window"


@dataclass(frozen=True)
class BuildSpec:
    """What the converter and the card need to know about one reference model."""

    name: str
    description: str
    task: str  # classification | regression | anomaly
    output_name: str
    channels: tuple[str, ...]
    units: tuple[str, ...]
    sample_rate_hz: float
    window: int
    hop: int
    labels: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    target_units: tuple[str, ...] = ()
    threshold: float | None = None
    max_drop: float = 1.0
    validation_kind: str = "labels"  # labels | targets | none (what the converter's gate scores)
    root: Path = MODELS  # the model's files go to root/<name>/ (tests rebuild into a temporary root)
    # A DSP chain (device/dsp/, manifest form): the converter then reads raw recordings
    # (data.extra["calibration_recording"], ["validation_recording"]) and computes the normalization itself.
    preprocess: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.root / self.name

    @property
    def bundle(self) -> Path:
        return self.directory / f"{self.name}.spinal"

    @property
    def build_dir(self) -> Path:
        return self.directory / "build"


def write_data(spec: BuildSpec, data: Prepared) -> tuple[Path, Path]:
    """``build/calibration.npz`` and ``build/validation.npz`` in the converter's format."""
    spec.build_dir.mkdir(parents=True, exist_ok=True)
    calib = spec.build_dir / "calibration.npz"
    val = spec.build_dir / "validation.npz"
    if spec.preprocess:  # raw recordings in the format `spinal record` writes (device/recording.py)
        from device import recording

        recording.write(calib, data.extra["calibration_recording"])
        recording.write(val, data.extra["validation_recording"])
        return calib, val
    np.savez(calib, **{INPUT_NAME: data.calib_x})
    arrays: dict[str, np.ndarray] = {INPUT_NAME: data.val_x}
    if spec.validation_kind == "labels":
        arrays["labels"] = data.val_y.astype(np.int64)
    elif spec.validation_kind == "targets":
        arrays["targets"] = data.val_y.astype(np.float32).reshape(-1, 1)
    np.savez(val, **arrays)
    return calib, val


def convert(spec: BuildSpec, onnx_path: Path, calib: Path, val: Path, data: Prepared,
            formats: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build the bundle with ``spinal convert``'s engine (``formats``: its ``--formats``, default all);
    returns the converter's report."""
    from toolchain.convert import ConvertOptions, Meaning, Output, Quantization, Source
    from toolchain.convert import convert as run_convert

    mean, std = data.norm.as_lists()
    if spec.preprocess:  # the converter computes the normalization from the processed calibration windows
        mean, std = [], []
    opts = ConvertOptions(
        source=Source(model=str(onnx_path), input_shapes={INPUT_NAME: (1, spec.window, len(spec.channels))}),
        quantization=Quantization(formats=formats, calibration=calib, calibration_samples=len(data.calib_x),
                                  validation=val, validation_samples=len(data.val_x), max_drop=spec.max_drop),
        meaning=Meaning(task=spec.task, task_output=spec.output_name, labels=spec.labels,
                        activation="logits" if spec.task == "classification" else None, targets=spec.targets,
                        units=spec.target_units, threshold=spec.threshold, channels=spec.channels,
                        channel_units=spec.units, sample_rate_hz=spec.sample_rate_hz, window=spec.window,
                        hop=spec.hop, layout="NTC", norm_mean=tuple(mean), norm_std=tuple(std),
                        preprocess=spec.preprocess),
        output=Output(out=spec.bundle, force=True, name=spec.name, description=spec.description, golden_count=8,
                      latency_runs=200, seed=0),
    )
    return run_convert(opts).report


Scorer = Callable[[np.ndarray, Prepared, float | None], dict[str, float]]


def score_bundle(bundle_path: Path, data: Prepared, scorer: Scorer) -> dict[str, dict[str, Any]]:
    """Every artifact of the bundle run on the validation data and scored, keyed by artifact path."""
    results: dict[str, dict[str, Any]] = {}
    with open_bundle(bundle_path) as bundle:
        threshold = bundle.manifest.task.threshold
        report = bundle.manifest.report.get("artifacts", {})
        for art in bundle.manifest.artifacts:
            outputs = evaluate.run_artifact(bundle, art, data.val_x)
            entry = report.get(art.path, {})
            results[art.path] = {
                "format": art.format, "precision": art.precision, "bytes": art.bytes,
                "metrics": scorer(outputs, data, threshold),
                "latency_us": entry.get("latency_us"),
                "quantization": entry.get("quantization"),
            }
    return results


def format_key(path: str) -> str:
    """The converter's ``--formats`` key of an artifact file name (``model.int8.tflite`` → ``tflite-int8``)."""
    from toolchain.convert import FORMATS

    for key, (_, _, name) in FORMATS.items():
        if name == path:
            return key
    raise KeyError(f"{path}: not an artifact name the converter makes")


def save_metrics(spec: BuildSpec, torch_metrics: dict[str, float], artifacts: dict[str, dict[str, Any]],
                 report: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``models/<name>/metrics.json`` (the machine-readable half of the card)."""
    sha, size = file_digest(spec.bundle)
    metrics = {
        "name": spec.name,
        "bundle": spec.bundle.name,
        "bundle_sha256": sha,
        "bundle_bytes": size,
        "torch_fp32": torch_metrics,
        "artifacts": artifacts,
        "rejected": {k: {kk: v.get(kk) for kk in ("format", "precision", "reason", "drop")}
                     for k, v in report.get("rejected", {}).items()},
        "failed": report.get("failed", {}),
        "rejected_by_task_gate": info.pop("rejected_by_task_gate", {}),
        "converter_notes": report.get("notes", []),
        "conversion_seconds": report.get("conversion_seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        **info,
    }
    path = spec.directory / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return metrics


def fmt(value: Any, digits: int = 3) -> str:
    """How the card prints a number (the tests format the same way to find it)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def artifact_table(metrics: dict[str, Any], columns: tuple[tuple[str, str, int], ...]) -> str:
    """Markdown table: one row per shipped artifact; ``columns`` are ``(metric key, heading, digits)``."""
    head = "| artifact | format | precision | bytes | " + " | ".join(h for _, h, _ in columns) + \
           " | latency here (µs) | quantization |"
    rule = "|" + "---|" * (6 + len(columns))
    rows = [head, rule]
    torch_row = "| torch (training, fp32) | — | fp32 | — | " + \
        " | ".join(fmt(metrics["torch_fp32"].get(k), d) for k, _, d in columns) + " | — | — |"
    rows.append(torch_row)
    for path, art in metrics["artifacts"].items():
        values = " | ".join(fmt(art["metrics"].get(k), d) for k, _, d in columns)
        lat = fmt(art.get("latency_us"), 1)
        rows.append(f"| {path} | {art['format']} | {art['precision']} | {art['bytes']} | {values} | {lat} | "
                    f"{art.get('quantization') or '—'} |")
    return "\n".join(rows)


def not_shipped(metrics: dict[str, Any]) -> str:
    """Markdown list of artifacts the converter rejected or could not make (or a line saying none)."""
    lines = []
    for path, entry in {**metrics.get("rejected", {}), **metrics.get("failed", {})}.items():
        lines.append(f"- `{path}`: {entry.get('reason', 'not produced')} (spinal convert)")
    for path, reason in metrics.get("rejected_by_task_gate", {}).items():
        lines.append(f"- `{path}`: {reason} (this model's task gate)")
    return "\n".join(lines) if lines else "Every artifact format was produced and passed the accuracy gate."


def write_card(spec: BuildSpec, text: str) -> Path:
    """Write ``models/<name>/MODEL_CARD.md``."""
    path = spec.directory / "MODEL_CARD.md"
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def clean_build(spec: BuildSpec) -> None:
    """Remove the ignored ``build/`` folder of a model (data and fp32 ONNX are rebuilt on demand)."""
    shutil.rmtree(spec.build_dir, ignore_errors=True)
