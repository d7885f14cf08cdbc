"""The tflite-runtime fallback: known breakages are detected before they crash, and say what to install."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from device.errors import MissingDependency, ModelFileError
from device.runtime import RuntimePolicy, load_model
from device.runtime.tflite import operator_codes, preflight


def test_numpy_2_is_detected_before_the_array_api_crash() -> None:
    with pytest.raises(MissingDependency, match=r"'_ARRAY_API not found' under numpy 2\.1\.3; install ai-edge-litert"):
        preflight(numpy_version="2.1.3", python=(3, 11))
    preflight(numpy_version="1.26.4", python=(3, 11))


def test_python_3_13_has_no_wheel() -> None:
    with pytest.raises(MissingDependency, match=r"no release for Python 3\.13; install ai-edge-litert"):
        preflight(numpy_version="1.26.4", python=(3, 13))


def test_operator_codes_match_the_interpreter(bundle_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = bundle_dir / "model_int8.tflite"
    codes = operator_codes(path.read_bytes())
    it = Interpreter(model_path=str(path))
    used = {op["op_name"] for op in it._get_ops_details()}
    assert {"CONV_2D", "FULLY_CONNECTED"} <= used
    assert 9 in {code for code, _, _ in codes}  # FULLY_CONNECTED
    assert all(version >= 1 for _, version, _ in codes)


def test_dynamic_range_file_from_tf_2_19_is_refused_before_the_runtime(plain_files: dict[str, Path]) -> None:
    path = plain_files["dynamic-range"]
    versions = {code: version for code, version, _ in operator_codes(path.read_bytes())}
    if versions.get(9, 0) < 12:
        pytest.skip("this TensorFlow writes FULLY_CONNECTED below v12")
    # LiteRT runs it ...
    model = load_model(path, RuntimePolicy(runtime="litert"))
    assert model.info.precision == "int8"
    pytest.importorskip("tflite_runtime")
    # ... tflite-runtime 2.14 cannot: refused with the reason and the fix, not "Registration failed".
    with pytest.raises(ModelFileError, match=r"FULLY_CONNECTED version 12 .* cannot load; install ai-edge-litert"):
        load_model(path, RuntimePolicy(runtime="tflite-runtime"))


def test_tflite_runtime_runs_float_models_and_warns_for_int8(bundle_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("tflite_runtime")
    model = load_model(bundle_dir, RuntimePolicy(runtime="tflite-runtime", artifact="fp32"))
    assert model.info.runtime == "tflite-runtime" and model.info.version.startswith("2.")
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        int8 = load_model(bundle_dir, RuntimePolicy(runtime="tflite-runtime", artifact="int8"))
    assert "does not run int8 models on XNNPACK" in caplog.text
    assert int8.info.delegate is None  # honest: not XNNPACK


def test_auto_prefers_litert_over_tflite_runtime(bundle_dir: Path, cache_dir: Path) -> None:
    model = load_model(bundle_dir, RuntimePolicy(artifact="model_fp32.tflite", cache_dir=cache_dir))
    assert model.info.runtime == "litert"


def test_bench_exits_0_when_only_the_fallback_runtime_cannot_load_a_file(plain_files: dict[str, Path]) -> None:
    import json

    from tests.conftest import run_cli

    path = plain_files["dynamic-range"]
    if {code: version for code, version, _ in operator_codes(path.read_bytes())}.get(9, 0) < 12:
        pytest.skip("this TensorFlow writes FULLY_CONNECTED below v12")
    pytest.importorskip("tflite_runtime")
    result = run_cli("bench", path, "--json", "--seconds", "0.05", "--threads", "1")
    rows = {r["runtime"]: r for r in json.loads(result.stdout)["rows"]}
    assert "FULLY_CONNECTED version 12" in rows["tflite-runtime"]["error"] and "error" not in rows["litert"]
    assert result.exit_code == 0  # LiteRT measured the file: one runtime's refusal is a row, not a failure
