"""Keras importer: TFLite through TensorFlow's own converter, ONNX through tf2onnx.

A ``.keras``/``.h5`` model is exported to a SavedModel (``model.export``); a SavedModel directory
is used as it is. Both artifact families come from that one SavedModel, so their inputs keep the
Keras layout (channels-last) and the same names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from device.errors import BadInput, ModelFileError
from toolchain.sources import SourceModel, SourceOptions
from toolchain.sources.onnx import finalize


def load_keras(path: Path, workdir: Path, opts: SourceOptions) -> SourceModel:
    """Export ``path`` to a SavedModel (if needed) and to ``workdir/model.fp32.onnx`` with tf2onnx."""
    from toolchain.tflite import import_tf, quiet_native

    if not path.exists():
        raise BadInput(f"{path}: no such Keras model")
    tf = import_tf()
    notes: list[str] = []
    keras_model = None
    if path.is_dir():
        saved = path
        notes.append("Keras SavedModel used as given")
    else:
        with quiet_native():
            import keras
        try:
            with quiet_native():
                keras_model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ModelFileError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {message})") from None
        saved = workdir / "keras_saved_model"
        try:
            with quiet_native():
                keras_model.export(str(saved), format="tf_saved_model", verbose=False)
        except Exception as exc:
            raise ModelFileError(f"{path}: Keras could not export a SavedModel ({type(exc).__name__}: {exc})") \
                from None
        notes.append(f"exported with Keras {keras.__version__} to a SavedModel")
    raw = workdir / "tf2onnx.onnx"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--signature_def", "serving_default",
         "--output", str(raw), "--opset", str(opts.opset)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if proc.returncode != 0 or not raw.exists():
        errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
        raise ModelFileError(f"{path}: tf2onnx failed: {(errors[-1] if errors else proc.stderr[-300:]).strip()}")
    import onnx

    notes.append(f"ONNX made with tf2onnx (opset {opts.opset})")
    out = workdir / "model.fp32.onnx"
    finalize(onnx.load(str(raw)), out, SourceOptions(input_shapes=opts.input_shapes, hint_shapes=opts.hint_shapes,
                                                     opset=opts.opset), label=str(path), notes=notes)
    with quiet_native():
        loaded = tf.saved_model.load(str(saved))
    fn = loaded.signatures["serving_default"]

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = fn(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: value.numpy() for name, value in result.items()}

    return SourceModel(kind="keras", onnx_path=out, reference=reference, saved_model=saved, notes=notes)
