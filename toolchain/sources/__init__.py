"""Importers: every source format ends as one fp32 ONNX file with fixed shapes.

``load_source`` picks the importer from the model argument: ``.onnx`` files, PyTorch
(``package.module:factory``, ``.pt2`` ExportedProgram, ``.pt``/``.pth`` pickled module or
TorchScript), Keras (``.keras``/``.h5`` or a SavedModel directory) and scikit-learn
(``.joblib``/``.pkl``/``.pickle``). Heavy packages are imported inside the importer that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.errors import BadInput

Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class SourceModel:
    """What an importer hands to the pipeline."""

    kind: str  # onnx | torch | keras | sklearn
    onnx_path: Path  # fp32 ONNX, one file, no external data
    reference: Reference | None = None  # the source framework's own forward pass (one sample batch)
    saved_model: Path | None = None  # Keras: the SavedModel TFLite is made from (skips onnx2tf)
    tflite_blocked: str | None = None  # why no TFLite artifact can exist (sklearn)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceOptions:
    """What importers need from the command line."""

    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "" = the only/first input
    hint_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # from the calibration data
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    opset: int = 17


def detect_kind(model: str) -> str:
    """Which importer handles ``model``."""
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt2", ".pt", ".pth", ".ts"):
        return "torch"
    if suffix in (".keras", ".h5") or (path.is_dir() and (path / "saved_model.pb").exists()):
        return "keras"
    if suffix in (".joblib", ".pkl", ".pickle"):
        return "sklearn"
    if ":" in model and not path.exists():
        return "torch"
    if not path.exists():
        raise BadInput(f"{model}: no such file, and not a 'package.module:factory' PyTorch reference")
    raise BadInput(f"{model}: unknown model type; give .onnx or .tflite, a PyTorch .pt2/.pt or "
                   "'package.module:factory', a Keras .keras/.h5/SavedModel directory, or a scikit-learn .joblib/.pkl")


def load_source(model: str, workdir: Path, opts: SourceOptions) -> SourceModel:
    """Import ``model`` into ``workdir`` as a fp32 ONNX file."""
    kind = detect_kind(model)
    if kind == "onnx":
        from toolchain.sources.onnx import load_onnx

        return load_onnx(Path(model), workdir, opts)
    if kind == "torch":
        from toolchain.sources.torch import load_torch

        return load_torch(model, workdir, opts)
    if kind == "keras":
        from toolchain.sources.keras import load_keras

        return load_keras(Path(model), workdir, opts)
    from toolchain.sources.sklearn import load_sklearn

    return load_sklearn(Path(model), workdir, opts)
