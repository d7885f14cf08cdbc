"""Fixtures for the daemon tests: small real bundles (ONNX, run by onnxruntime) built once per session."""

from __future__ import annotations

import datetime
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from device.bundle import file_digest, pack_archive, write_manifest
from device.manifest import (
    FORMAT_VERSION,
    Artifact,
    ArtifactTensor,
    Golden,
    Manifest,
    Normalization,
    Task,
    TensorSpec,
    Tolerance,
)

CHANNELS = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
LABELS = ("still", "walk", "run", "shake")
WINDOW, HOP, RATE = 20, 10, 50.0


def _onnx_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_in = WINDOW * len(CHANNELS)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["imu", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, [1, WINDOW, len(CHANNELS)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        [numpy_helper.from_array(np.array([1, n_in], dtype=np.int64), "shape"),
         numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_bundle(root: Path, seed: int, name: str = "tiny-imu", corrupt_golden: bool = False) -> Path:
    """A real bundle directory: a linear ONNX classifier over a 20x6 window, golden vectors from onnxruntime."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    weights = rng.normal(scale=0.2, size=(WINDOW * len(CHANNELS), len(LABELS)))
    bias = rng.normal(scale=0.1, size=len(LABELS))
    root.mkdir(parents=True, exist_ok=True)
    blob = _onnx_model(weights, bias)
    (root / "model.onnx").write_bytes(blob)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    x = rng.normal(size=(4, 1, WINDOW, len(CHANNELS))).astype(np.float32)
    y = np.stack([sess.run(None, {"imu": xi})[0] for xi in x])
    if corrupt_golden:
        y = y + 1.0  # the manifest vouches for this file, but the model does not compute it
    buf = io.BytesIO()
    np.savez(buf, **{"input/imu": x, "output/model.onnx/logits": y})
    (root / "golden.npz").write_bytes(buf.getvalue())
    sha, size = file_digest(root / "model.onnx")
    gsha, gsize = file_digest(root / "golden.npz")
    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name,
        created=datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC).isoformat(),
        inputs=(TensorSpec(name="imu", shape=(1, WINDOW, len(CHANNELS)), layout="NTC",
                           channels=tuple(f"imu.{c}" for c in CHANNELS), sample_rate_hz=RATE, window=WINDOW,
                           hop=HOP, normalization=Normalization(mean=(0.0,) * 6, std=(9.81,) * 3 + (1.0,) * 3)),),
        outputs=(TensorSpec(name="logits", shape=(1, len(LABELS))),),
        task=Task(kind="classification", output="logits", labels=LABELS, activation="logits"),
        artifacts=(Artifact(path="model.onnx", format="onnx", precision="fp32", sha256=sha, bytes=size,
                            inputs=(ArtifactTensor("imu", (1, WINDOW, len(CHANNELS)), "float32", "NTC"),),
                            outputs=(ArtifactTensor("logits", (1, len(LABELS)), "float32"),)),),
        golden=Golden(path="golden.npz", sha256=gsha, bytes=gsize, count=len(x),
                      tolerances={"model.onnx": Tolerance(atol=1e-4, rtol=1e-4)}),
    )
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """``good`` and ``good2`` (different weights) archives, ``corrupt`` (bytes changed after packing:
    sha256 mismatch) and ``canary_fail`` (consistent files, wrong golden outputs)."""
    base = tmp_path_factory.mktemp("bundles")
    out = {}
    for key, seed, kwargs in (("good", 1, {}), ("good2", 2, {"name": "tiny-imu-v2"}),
                              ("canary_fail", 3, {"corrupt_golden": True})):
        out[key] = pack_archive(build_bundle(base / key, seed, **kwargs), base / f"{key}.spinal")
    corrupt_dir = base / "corrupt"
    shutil.copytree(base / "good", corrupt_dir)
    data = bytearray((corrupt_dir / "model.onnx").read_bytes())
    data[-5] ^= 0xFF
    (corrupt_dir / "model.onnx").write_bytes(bytes(data))
    out["corrupt_dir"] = corrupt_dir
    # An archive whose member was altered: pack the good dir's files by hand with one byte flipped.
    import tarfile

    corrupt = base / "corrupt.spinal"
    with tarfile.open(corrupt, "w:gz") as tar:
        for name in ("manifest.json", "model.onnx", "golden.npz"):
            tar.add(corrupt_dir / name, arcname=name)
    out["corrupt"] = corrupt
    out["dir"] = base / "good"
    return out
