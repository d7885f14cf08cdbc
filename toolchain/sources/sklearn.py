"""scikit-learn importer: a pickled/joblib estimator through skl2onnx (ONNX artifacts only).

Classifiers are exported without ZipMap, so the outputs are ``label`` (int64) and
``probabilities`` (float32, one column per class). TFLite has no equivalent of the
``ai.onnx.ml`` operators skl2onnx emits, so the bundle says why it holds no TFLite artifact.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput, ModelFileError
from toolchain.sources import SourceModel, SourceOptions
from toolchain.sources.onnx import finalize

TFLITE_REASON = ("scikit-learn models convert through skl2onnx to ai.onnx.ml operators ({ops}) that TFLite has no "
                 "equivalent for; the ONNX artifacts run with onnxruntime")


def load_estimator(path: Path) -> Any:
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        if path.suffix == ".joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable scikit-learn model ({type(exc).__name__}: {exc})") from None


def load_sklearn(path: Path, workdir: Path, opts: SourceOptions) -> SourceModel:
    """Export the estimator with skl2onnx to ``workdir/model.fp32.onnx``."""
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    est = load_estimator(path)
    if not hasattr(est, "predict"):
        raise BadInput(f"{path}: holds a {type(est).__name__}, not a scikit-learn estimator")
    n_features = getattr(est, "n_features_in_", None)
    given = next(iter(opts.input_shapes.values()), None) if opts.input_shapes else None
    if given is not None:
        n_features = given[-1]
    if n_features is None:
        raise BadInput(f"{path}: the estimator does not say its number of features; give --input-shape 1,N")
    input_name = (opts.input_names or ("input",))[0]
    is_classifier = hasattr(est, "predict_proba")
    options = {id(est): {"zipmap": False}} if is_classifier else None
    try:
        proto = to_onnx(est, initial_types=[(input_name, FloatTensorType([1, int(n_features)]))],
                        target_opset={"": opts.opset, "ai.onnx.ml": 3}, options=options)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ModelFileError(f"{path}: skl2onnx cannot convert {type(est).__name__} ({type(exc).__name__}: "
                             f"{message})") from None
    notes = [f"exported {type(est).__name__} with skl2onnx"]
    out = workdir / "model.fp32.onnx"
    finalize(proto, out, SourceOptions(opset=opts.opset, output_names=opts.output_names), label=str(path),
             notes=notes)
    ml_ops = sorted({n.op_type for n in onnx.load(str(out)).graph.node if n.domain == "ai.onnx.ml"})
    blocked = TFLITE_REASON.format(ops=", ".join(ml_ops) or "none")
    if not ml_ops:
        blocked = "scikit-learn models are converted to ONNX only (skl2onnx); TFLite export is not supported for them"

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds[input_name].reshape(1, -1)
        result = {}
        if is_classifier:
            result["probabilities"] = np.asarray(est.predict_proba(x), dtype=np.float32)
            result["label"] = np.asarray(est.predict(x))
        else:
            result["variable"] = np.asarray(est.predict(x), dtype=np.float32).reshape(1, -1)
        return result

    return SourceModel(kind="sklearn", onnx_path=out, reference=reference, tflite_blocked=blocked, notes=notes)
