"""Regenerate tests/runtime/data: the runtime tests' bundle and plain files, for venvs without TensorFlow.

    python -m tests.runtime.make_data

With the host stack installed the tests build these afresh (conftest.py); the committed copies let the
device-only venv (Python 3.13, numpy 2, no TensorFlow/onnx) run the same tests against real artifacts.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from tests.runtime import bundles

DATA = Path(__file__).parent / "data"


def build_plain(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    w = bundles.weights()
    keras = bundles.keras_model(w)
    calibration = bundles.samples(32, seed=1)
    files = {}
    for precision in ("fp32", "int8-io"):
        path = root / f"cnn_{precision}.tflite"
        path.write_bytes(bundles.tflite_bytes(keras, precision, calibration))
        files[precision] = path
    files["dynamic-range"] = bundles.mlp_dynamic_range(root / "mlp_dynamic_range.tflite")
    files["onnx"] = root / "cnn.onnx"
    bundles.onnx_fp32(w, files["onnx"])
    return files


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()):
        bundles.build_bundle(DATA / "imu")
        build_plain(DATA / "plain")
    for path in sorted(DATA.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(DATA)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
