"""Session-scoped conversions: each model is built and converted ONCE (a conversion takes 10-60 s).

The models are built here, in the test session: a small CNN trained on scikit-learn's digits, a GRU,
a two-input/two-output MLP, a Keras Conv1D model and a scikit-learn classifier.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
# Only look for onnx2tf: importing it raises the recursion limit to 2**31-1 for the whole test session
# (the converter restores it around its own use).
if importlib.util.find_spec("onnx2tf") is None:
    pytest.skip("needs onnx2tf (the host extra)", allow_module_level=True)
torch = pytest.importorskip("torch")

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import toolchain_models as tm  # noqa: E402  (sys.path set just above)

from toolchain.convert import ConvertOptions, ConvertResult, convert  # noqa: E402


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toolchain")


@pytest.fixture(scope="session")
def digits_data(workdir: Path) -> dict[str, Path]:
    return tm.digits_files(workdir)


@pytest.fixture(scope="session")
def cnn_bundle(workdir: Path, digits_data: dict[str, Path]) -> ConvertResult:
    """The digits CNN, every format, real calibration and labelled validation data."""
    return convert(ConvertOptions.build(
        model="toolchain_models:digits_cnn", out=workdir / "cnn.spinal", input_shapes={"": (1, 1, 8, 8)},
        calibration=digits_data["calibration"], validation=digits_data["validation"],
        labels=("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), name="digits-cnn",
        layout="NCHW", latency_runs=10,
    ))


@pytest.fixture(scope="session")
def gru_bundle(workdir: Path) -> ConvertResult:
    """A GRU over an IMU-like window (NTC), every format, metadata for the device pipeline."""
    x = tm.imu_windows(64)
    np.save(workdir / "gru_cal.npy", x)
    return convert(ConvertOptions.build(
        model="toolchain_models:gru_model", out=workdir / "gru", input_shapes={"": (1, tm.GRU_T, 3)},
        calibration=workdir / "gru_cal.npy", channels=("imu.accel_x", "imu.accel_y", "imu.accel_z"),
        sample_rate_hz=50.0, window=tm.GRU_T, hop=tm.GRU_T // 2, labels=("idle", "walk", "run", "jump"),
        norm_mean=(0.0, 0.0, 9.81), norm_std=(1.0, 1.0, 1.0), latency_runs=10,
    ))


@pytest.fixture(scope="session")
def keras_bundle(workdir: Path) -> ConvertResult:
    path = tm.keras_model(workdir)
    x = tm.imu_windows(64, t=16)
    np.savez(workdir / "keras_cal.npz", imu=x)
    return convert(ConvertOptions.build(model=str(path), out=workdir / "keras", calibration=workdir / "keras_cal.npz",
                                        latency_runs=10))


@pytest.fixture(scope="session")
def sklearn_bundle(workdir: Path) -> ConvertResult:
    path, x, y = tm.sklearn_model(workdir)
    np.savez(workdir / "iris_val.npz", input=x, labels=y)
    return convert(ConvertOptions.build(model=str(path), out=workdir / "sklearn", validation=workdir / "iris_val.npz",
                                        calibration=workdir / "iris_val.npz", latency_runs=10))
