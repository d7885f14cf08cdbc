"""Fixtures shared by the whole suite.

The foundation tests use the tiny committed models in ``tests/data`` (see
``make_tiny_models.py``) so that they also run in the device-only venv (no onnx, no
TensorFlow). ``make_bundle`` writes a real, verifiable bundle around them.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device.bundle import file_digest, write_manifest
from device.cli import app
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

DATA = Path(__file__).parent / "data"
TINY_T, TINY_C, TINY_K = 8, 3, 4
LABELS = ("idle", "walk", "run", "jump")


def tiny_reference(x: np.ndarray) -> np.ndarray:
    """What both tiny models compute, in numpy: ``flatten(x) @ W + b``."""
    with np.load(DATA / "tiny_weights.npz") as w:
        return (x.reshape(x.shape[0], -1) @ w["W"] + w["b"]).astype(np.float32)


def tiny_manifest(golden: Golden | None, artifacts: tuple[Artifact, ...]) -> Manifest:
    """A complete manifest for the tiny classifier."""
    channels = ("imu.accel_x", "imu.accel_y", "imu.accel_z")
    return Manifest(
        format_version=FORMAT_VERSION,
        name="tiny-activity",
        created="2026-11-23T00:00:00Z",
        description="tiny linear test classifier",
        inputs=(
            TensorSpec(
                name="x", shape=(1, TINY_T, TINY_C), layout="NTC", channels=channels,
                sample_rate_hz=10.0, window=TINY_T, hop=4,
                normalization=Normalization(mean=(0.0, 0.0, 9.81), std=(1.0, 1.0, 1.0)),
                units=("m/s^2",) * 3,
            ),
        ),
        outputs=(TensorSpec(name="logits", shape=(1, TINY_K)),),
        task=Task(kind="classification", output="logits", labels=LABELS, activation="logits"),
        artifacts=artifacts,
        golden=golden,
        report={"artifacts": {a.path: {"accuracy": 1.0} for a in artifacts}},
        producer={"name": "spinal-tests"},
    )


@dataclass
class BundleFactory:
    """Writes tiny bundles into a temporary directory."""

    base: Path

    def __call__(self, name: str = "bundle", formats: tuple[str, ...] = ("onnx", "tflite"), count: int = 5) -> Path:
        root = self.base / name
        root.mkdir(parents=True)
        artifacts = []
        for fmt in formats:
            rel = f"model.fp32.{fmt}"
            shutil.copyfile(DATA / f"tiny.{fmt}", root / rel)
            sha, size = file_digest(root / rel)
            artifacts.append(Artifact(
                path=rel, format=fmt, precision="fp32", sha256=sha, bytes=size,
                inputs=(ArtifactTensor("x", (1, TINY_T, TINY_C), "float32", layout="NTC"),),
                outputs=(ArtifactTensor("logits", (1, TINY_K), "float32"),),
            ))
        rng = np.random.default_rng(7)
        x = rng.normal(size=(count, 1, TINY_T, TINY_C)).astype(np.float32)
        expected = np.stack([tiny_reference(s) for s in x])
        arrays = {"input/x": x} | {f"output/{a.path}/logits": expected for a in artifacts}
        np.savez(root / "golden.npz", **arrays)
        sha, size = file_digest(root / "golden.npz")
        golden = Golden(path="golden.npz", sha256=sha, bytes=size, count=count,
                        tolerances={a.path: Tolerance(atol=1e-4, rtol=1e-4) for a in artifacts})
        write_manifest(root, tiny_manifest(golden, tuple(artifacts)))
        return root


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_bundle(name="bundle", formats=("onnx", "tflite"))`` → a verified bundle directory."""
    return BundleFactory(tmp_path)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """Run ``spinal ARGS`` in-process and capture its exit code, stdout and stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def tar_member(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE,
               link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    """One archive member: a regular file with ``data``, or (``data=None``) a link, device, FIFO ... header."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, data


def write_archive(directory: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
                  name: str = "evil.spinal") -> Path:
    """A ``.spinal`` (tar.gz) written member by member as given, however hostile; its path."""
    path = directory / name
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path
