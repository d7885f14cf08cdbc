"""Session-scoped fixtures for the runtime tests: real bundles converted here, real delegate libraries."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the host extra builds the test bundles)")


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with TFLite fp32/fp16/int8/int8-io and ONNX fp32/int8 (NCT layout) artifacts + golden vectors."""
    need("tensorflow", "onnx", "onnxruntime", "ai_edge_litert")
    from tests.runtime.bundles import build_bundle

    return build_bundle(tmp_path_factory.mktemp("bundles") / "imu")


@pytest.fixture(scope="session")
def bundle_archive(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from device.bundle import pack_archive

    return pack_archive(bundle_dir, tmp_path_factory.mktemp("archive") / "imu.spinal")


@pytest.fixture(scope="session")
def bad_golden_bundle(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundle, re-sealed, with the golden outputs of model_int8.tflite off by 0.5."""
    from device.bundle import file_digest, read_manifest, write_manifest

    root = tmp_path_factory.mktemp("bad") / "imu"
    shutil.copytree(bundle_dir, root)
    with np.load(root / "golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output/model_int8.tflite/logits"] = arrays["output/model_int8.tflite/logits"] + 0.5
    with open(root / "golden.npz", "wb") as fh:
        np.savez(fh, **arrays)
    manifest = read_manifest(root)
    sha, size = file_digest(root / "golden.npz")
    write_manifest(root, dataclasses.replace(manifest, golden=dataclasses.replace(manifest.golden, sha256=sha,
                                                                                   bytes=size)))
    return root


@pytest.fixture(scope="session")
def zero_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real TFLite external delegate that loads, takes every node and computes nothing (wrong outputs)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test delegate")
    out = tmp_path_factory.mktemp("delegate") / "libzero_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "zero_delegate.c")], check=True)
    return out


@pytest.fixture(scope="session")
def plain_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plain model files (no manifest): the CNN as TFLite fp32/int8-io and ONNX fp32, and a dynamic-range MLP."""
    need("tensorflow", "onnx", "onnxruntime", "ai_edge_litert")
    from tests.runtime import bundles

    root = tmp_path_factory.mktemp("plain")
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


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
