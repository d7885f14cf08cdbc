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


DATA = HERE / "data"
HOST = ("tensorflow", "onnx", "onnxruntime", "ai_edge_litert")


def need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the host extra builds the test bundles)")


def have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """auto's measurements and the TFLite probe's markers go to a directory of this session, not ~/.cache/spinal:
    a marker left by an earlier run would let a test skip the probe it means to exercise."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPINAL_CACHE_DIR", str(tmp_path_factory.mktemp("spinal-cache")))
        yield


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with TFLite fp32/fp16/int8/int8-io and ONNX fp32/int8 (NCT layout) artifacts + golden vectors.

    Built afresh where the host stack is installed; elsewhere (the device-only venv) the committed copy
    made by ``python -m tests.runtime.make_data``.
    """
    root = tmp_path_factory.mktemp("bundles") / "imu"
    if have(*HOST):
        from tests.runtime.bundles import build_bundle

        return build_bundle(root)
    need("ai_edge_litert", "onnxruntime")
    shutil.copytree(DATA / "imu", root)
    return root


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
    root = tmp_path_factory.mktemp("plain")
    if have(*HOST):
        from tests.runtime.make_data import build_plain

        return build_plain(root)
    need("ai_edge_litert", "onnxruntime")
    names = {"fp32": "cnn_fp32.tflite", "int8-io": "cnn_int8-io.tflite", "dynamic-range": "mlp_dynamic_range.tflite",
             "onnx": "cnn.onnx"}
    for name in names.values():
        shutil.copyfile(DATA / "plain" / name, root / name)
    return {key: root / name for key, name in names.items()}


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
