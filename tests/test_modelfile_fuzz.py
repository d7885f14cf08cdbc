"""Corrupt model files never crash the process and never escape as anything but ModelFileError."""

from __future__ import annotations

import random

import pytest

from device.errors import ModelFileError
from device.modelfile import inspect_model_file
from tests.conftest import DATA


def _mutants(name: str, count: int, seed: int) -> list[bytes]:
    data = (DATA / name).read_bytes()
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(8, len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


@pytest.fixture(scope="module")
def tflite_outcomes(tmp_path_factory) -> list[tuple[str, str | None]]:
    """Each mutant of tiny.tflite inspected once: (path, error message or None)."""
    base = tmp_path_factory.mktemp("mutants")
    outcomes = []
    for i, blob in enumerate(_mutants("tiny.tflite", 12, seed=20261123)):
        path = base / f"{i}.tflite"
        path.write_bytes(blob)
        try:
            assert inspect_model_file(path).format == "tflite"
            outcomes.append((str(path), None))
        except ModelFileError as exc:
            outcomes.append((str(path), str(exc)))
    return outcomes


def test_mutated_tflite_is_loaded_or_refused_in_one_line(tflite_outcomes):
    """Such files crash LiteRT itself (SIGSEGV/SIGBUS) about half the time; the probe runs them in a child."""
    for path, message in tflite_outcomes:
        if message is not None:
            assert "\n" not in message and message.startswith(path)


# A child that dies the way LiteRT 2.1 does on many of the mutants above (2.3 verifies the flatbuffer first
# and refuses them instead): a segmentation fault.
SEGFAULT = "import ctypes; print(__import__('sys').argv[1], flush=True); ctypes.string_at(0)"


def test_a_runtime_crash_becomes_one_line_naming_the_file(monkeypatch):
    from device import modelfile

    monkeypatch.setattr(modelfile, "_PROBE_CODE", SEGFAULT)
    with pytest.raises(ModelFileError) as err:
        modelfile.probe_tflite_files([DATA / "tiny.tflite"])
    assert str(err.value) == (f"{DATA / 'tiny.tflite'}: the TFLite runtime crashed reading it (SIGSEGV); the file is "
                              "corrupt or not a model this runtime can run")


@pytest.mark.parametrize("index", range(40))
def test_mutated_onnx_is_read_or_refused_in_one_line(tmp_path, index):
    path = tmp_path / "model.onnx"
    path.write_bytes(_mutants("tiny.onnx", 40, seed=7)[index])
    try:
        inspect_model_file(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc)


def test_a_file_that_passed_the_probe_is_remembered_across_processes(tmp_path, monkeypatch):
    from device import modelfile

    monkeypatch.setenv("SPINAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(modelfile, "_probed", set())
    calls = []
    real = modelfile.probe_tflite_files
    monkeypatch.setattr(modelfile, "probe_tflite_files", lambda paths: calls.append(paths) or real(paths))
    modelfile.ensure_tflite_loadable(DATA / "tiny.tflite")
    modelfile.ensure_tflite_loadable(DATA / "tiny.tflite")
    assert len(calls) == 1, "in memory"
    monkeypatch.setattr(modelfile, "_probed", set())  # as a new process would start
    modelfile.ensure_tflite_loadable(DATA / "tiny.tflite")
    assert len(calls) == 1, "on disk"
    assert len(list((tmp_path / "cache" / "probed").iterdir())) == 1


def test_a_crashing_file_is_never_remembered(tmp_path, monkeypatch):
    from device import modelfile

    monkeypatch.setenv("SPINAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(modelfile, "_probed", set())
    monkeypatch.setattr(modelfile, "_PROBE_CODE", SEGFAULT)
    for _ in range(2):
        with pytest.raises(ModelFileError, match="crashed reading it"):
            modelfile.ensure_tflite_loadable(DATA / "tiny.tflite")
    assert not (tmp_path / "cache" / "probed").exists()


def test_a_file_name_that_looks_like_json_is_inspected(tmp_path):
    # The child prints each path before its JSON line; a path starting with '{' was parsed as JSON.
    path = tmp_path / "{a}.tflite"
    path.write_bytes((DATA / "tiny.tflite").read_bytes())
    assert inspect_model_file(path).format == "tflite"
