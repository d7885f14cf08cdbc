"""The runtime registry (device/runtime/base.py ``RUNTIMES``): one record per runtime; every other name derives
from it and still says what it said before the registry, so callers that use the old names are unchanged."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import pytest

from device.runtime import base
from device.runtime.base import RUNTIMES, RuntimeRecord, runtimes_for


def test_the_old_names_say_what_they_said_before() -> None:
    assert tuple(RUNTIMES) == ("litert", "tflite-runtime", "onnxruntime")
    assert base.RUNTIME_FORMAT == {"litert": "tflite", "tflite-runtime": "tflite", "onnxruntime": "onnx"}
    assert base.RUNTIME_PACKAGE == {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime",
                                    "onnxruntime": "onnxruntime"}
    assert base.RUNTIME_MODULE == {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime",
                                   "onnxruntime": "onnxruntime"}
    assert base.INSTALL_HINT == {
        "litert": "pip install 'spinal[device]' (ai-edge-litert)",
        "tflite-runtime": "pip install tflite-runtime (Python <= 3.12, numpy < 2; prefer ai-edge-litert)",
        "onnxruntime": "pip install 'spinal[onnx-runtime]' (onnxruntime)",
    }
    assert base.RUNTIME_RANK == {"litert": 0, "onnxruntime": 1, "tflite-runtime": 2}


def test_records_are_frozen_and_keyed_by_their_name() -> None:
    for name, record in RUNTIMES.items():
        assert isinstance(record, RuntimeRecord) and record.name == name
    assert sorted(r.rank for r in RUNTIMES.values()) == list(range(len(RUNTIMES)))
    assert runtimes_for("tflite") == ("litert", "tflite-runtime")
    assert runtimes_for("onnx") == ("onnxruntime",)
    assert runtimes_for("gguf") == ()


def test_each_backend_module_has_the_backend_functions() -> None:
    for record in RUNTIMES.values():  # the backends import their runtime lazily: this works without it
        backend = record.load_backend()
        assert callable(backend.open_session) and callable(backend.version), record.backend


def test_the_copies_elsewhere_agree_with_the_registry() -> None:
    """Until they derive from it: the selection's rank table and the config's closed choice."""
    select = importlib.import_module("device.runtime.select")
    assert select.RUNTIME_RANK == base.RUNTIME_RANK
    from device.config import ModelConfig

    runtime = typing.get_type_hints(ModelConfig)["runtime"]
    assert set(typing.get_args(runtime)) == {"auto", *RUNTIMES}


def test_dist_version_reads_what_importlib_metadata_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from device.runtime.base import dist_version

    assert dist_version("numpy") == metadata.version("numpy")
    assert dist_version("no-such-dist-here") is None
    (tmp_path / "Ai_Edge_LiteRT-9.9.9rc1.dist-info").mkdir()  # normalised name, any case; first path entry wins
    (tmp_path / "onnxruntime_gpu-1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert dist_version("ai-edge-litert") == "9.9.9rc1"
    assert dist_version("onnxruntime-gpu") == "1.0" and dist_version("onnxruntime-gpux") is None
