"""Golden parity still catches a model that is not the one converted, on every CPU and runtime.

Each mutant is the shipped imu-activity bundle with one kind of wrong model put in, re-hashed so
that integrity passes: only parity can notice. Every artifact of a mutated bundle must fail
``spinal verify`` (exit 1) on every runtime here, in a line that names the artifact and the golden
vector. The bounds that let int8 kernels differ across CPUs must not let these through.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from device.bundle import file_digest, unpack_archive, write_manifest
from device.manifest import Manifest, Normalization, parse_manifest
from tests.conftest import run_cli
from tests.runtime import mutants

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "imu-activity" / "imu-activity.spinal"
FAIL = re.compile(r"^not the model that was converted: golden vector \d+: ")


def unpacked(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    out.mkdir()
    unpack_archive(BUNDLE, out)  # the bundle reader's own checked unpacking (tarfile's filter= needs 3.11.4)
    return out


def manifest_of(directory: Path) -> Manifest:
    return parse_manifest((directory / "manifest.json").read_text(encoding="utf-8"))


def rehash(directory: Path, **changes: object) -> None:
    """Record every artifact's new size and sha256 (and ``changes`` to the manifest) as a converter would."""
    manifest = manifest_of(directory)
    artifacts = []
    for art in manifest.artifacts:
        sha, size = file_digest(directory / art.path)
        artifacts.append(dataclasses.replace(art, sha256=sha, bytes=size))
    write_manifest(directory, dataclasses.replace(manifest, artifacts=tuple(artifacts), **changes))


def failed_artifacts(directory: Path) -> set[str]:
    """The artifacts whose parity failed on every runtime that ran them, each for a named golden vector."""
    result = run_cli("verify", directory, "--json")
    assert result.exit_code == 1, result.stdout[-3000:]
    rows = [c for c in json.loads(result.stdout)["checks"] if c["check"].startswith("parity ")]
    for row in rows:
        if row["ok"] is False:
            assert FAIL.match(row["detail"]), row["detail"]
            assert row["artifact"] in row["check"]
    ran = {r["artifact"] for r in rows if r["ok"] is not None}
    return {a for a in ran if all(r["ok"] is False for r in rows if r["artifact"] == a and r["ok"] is not None)}


def artifacts(directory: Path, suffixes: tuple[str, ...] = (".onnx", ".tflite"), int8: bool = False) -> list[Path]:
    arts = [a for a in manifest_of(directory).artifacts if (not int8 or a.precision.startswith("int8"))]
    return [directory / a.path for a in arts if a.path.endswith(suffixes)]


def test_the_unmutated_copy_verifies(tmp_path: Path) -> None:
    directory = unpacked(tmp_path, "same")
    rehash(directory)
    result = run_cli("verify", directory)
    assert result.exit_code == 0, result.stdout[-3000:]


MUTATIONS: dict[str, Callable[[Path], object]] = {
    "other weights": mutants.other_weights,
    "one layer perturbed": mutants.perturb_one_layer,
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_every_artifact_with_wrong_weights_fails(tmp_path: Path, mutation: str) -> None:
    directory = unpacked(tmp_path, "mutant")
    files = artifacts(directory)
    for path in files:
        MUTATIONS[mutation](path)
    rehash(directory)
    assert failed_artifacts(directory) == {p.name for p in files}


def test_an_int8_file_with_another_weight_scale_fails(tmp_path: Path) -> None:
    directory = unpacked(tmp_path, "rescaled")
    files = artifacts(directory, int8=True)
    assert files
    for path in files:
        mutants.rescale_weights(path, 1.5)
    rehash(directory)
    assert failed_artifacts(directory) >= {p.name for p in files}


def test_a_wrong_normalization_in_the_manifest_fails(tmp_path: Path) -> None:
    directory = unpacked(tmp_path, "normalization")
    manifest = manifest_of(directory)
    spec = manifest.inputs[0]
    assert spec.normalization is not None
    wrong = Normalization(mean=spec.normalization.mean, std=tuple(2.0 * s for s in spec.normalization.std))
    rehash(directory, inputs=(dataclasses.replace(spec, normalization=wrong), *manifest.inputs[1:]))
    assert failed_artifacts(directory) == {a.name for a in artifacts(directory)}


def test_outputs_scaled_by_half_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from device.runtime.model import Model

    directory = unpacked(tmp_path, "scaled")
    run = Model.run
    monkeypatch.setattr(Model, "run",
                        lambda self, inputs: {k: np.asarray(v) * 0.5 for k, v in run(self, inputs).items()})
    assert failed_artifacts(directory) == {a.name for a in artifacts(directory)}
