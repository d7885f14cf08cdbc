"""`spinal verify` (integrity + golden parity) and `spinal bench` end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINAL_CACHE_DIR", str(tmp_path / "cache"))


def test_verify_checks_parity_for_every_artifact_and_runtime(bundle_dir: Path) -> None:
    result = run_cli("verify", bundle_dir, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    parity = [c for c in data["checks"] if c["check"].startswith("parity")]
    ran = {(c["artifact"], c["runtime"]) for c in parity if c["ok"]}
    assert ("model_int8io.tflite", "litert") in ran and ("model_fp32.onnx", "onnxruntime") in ran
    assert all(c["ok"] for c in parity)
    row = next(c for c in parity if c["artifact"] == "model_fp32.onnx")
    # The converter's derived bound for a float file: 1e-4 x max(|golden|, 1) + 1e-3 x |golden| (toolchain.bounds).
    assert 1e-4 <= row["tolerance"]["atol"] < 1e-3 and row["tolerance"]["rtol"] == 0.001
    assert row["max_abs_err"] <= row["tolerance"]["atol"]
    assert row["decisions"] == "top-1 8/8"
    assert row["info"]["provider"] == "CPUExecutionProvider"


def test_verify_mismatch_exits_1_with_max_error_and_tolerance(bad_golden_bundle: Path) -> None:
    result = run_cli("verify", bad_golden_bundle, "--runtime", "litert")
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert re.search(r"FAIL parity model_int8.tflite on litert: not the model that was converted: golden vector 0: "
                     r"output 'logits' \|err\| 0\.5\d* > bound 0\.0\d+", out), out
    assert "ok parity model_fp32.tflite on litert" in out
    assert "skip parity model_fp32.onnx: --runtime litert does not run onnx files" in out
    assert out.rstrip().endswith("FAILED")


def test_verify_archive_and_runtime_choice(bundle_archive: Path) -> None:
    result = run_cli("verify", bundle_archive, "--runtime", "onnxruntime", "--json")
    assert result.exit_code == 0
    rows = [c for c in json.loads(result.stdout)["checks"] if c["check"].startswith("parity") and c["ok"]]
    assert {r["runtime"] for r in rows} == {"onnxruntime"} and len(rows) == 2


def test_verify_with_a_delegate_that_is_missing_fails(bundle_dir: Path) -> None:
    result = run_cli("verify", bundle_dir, "--runtime", "litert", "--delegate", "/nonexistent/libgpu.so")
    assert result.exit_code == 1
    assert "delegate library /nonexistent/libgpu.so not found" in " ".join(result.stdout.split())


def test_verify_with_a_mismatching_delegate_fails(bundle_dir: Path, zero_delegate: Path) -> None:
    result = run_cli("verify", bundle_dir, "--runtime", "litert", "--delegate", zero_delegate, "--json")
    assert result.exit_code == 1
    rows = [c for c in json.loads(result.stdout)["checks"] if c["check"].endswith("on litert")]
    assert len(rows) == 4 and all(r["ok"] is False and "outputs do not match" in r["detail"] for r in rows)


def test_verify_bad_options(bundle_dir: Path) -> None:
    assert run_cli("verify", bundle_dir, "--runtime", "tensorrt").exit_code == 2
    result = run_cli("verify", bundle_dir, "--delegate", "warp-drive")
    assert result.exit_code == 2 and "delegate 'warp-drive' is unknown" in result.stderr


def test_verify_plain_file_runs_it(plain_files: dict[str, Path]) -> None:
    result = run_cli("verify", plain_files["onnx"], "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["checks"]
    assert any(r["check"] == "runs on onnxruntime" and r["ok"] for r in rows)


def test_bench_plain_file_json(plain_files: dict[str, Path]) -> None:
    result = run_cli("bench", plain_files["fp32"], "--json", "--seconds", "0.1", "--threads", "1",
                     "--runtime", "litert")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    (row,) = data["rows"]
    for key in ("p50_us", "p99_us", "max_us", "throughput_per_s", "rss_after_load_mb", "cold_start_s"):
        assert row[key] > 0, key
    assert row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert row["parity"] is None and row["info"]["runtime"] == "litert"
    assert data["recommended"]["info"]["artifact"] == "cnn_fp32.tflite"
    assert data["device"]["cores"] >= 1


def test_bench_bundle_table_and_recommendation(bundle_dir: Path) -> None:
    result = run_cli("bench", bundle_dir, "--seconds", "0.05", "--threads", "1", "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "model_fp32.onnx" in out and "model_int8.onnx" in out and "recommended: --runtime onnxruntime" in out
    assert "p50 µs" in out and "cold s" in out


def test_bench_measures_delegates_fail_closed(bundle_dir: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    result = run_cli("bench", bundle_dir, "--json", "--seconds", "0.05", "--threads", "1", "--runtime",
                     "onnxruntime", "--delegate", "cuda")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    cuda = [r for r in rows if r["delegate"] == "cuda"]
    cpu = [r for r in rows if r["delegate"] is None]
    assert len(cuda) == len(cpu) == 2
    # Measured fail-closed: a missing provider is reported, never timed as if it were CUDA.
    assert all("CUDAExecutionProvider is not in this onnxruntime" in r["error"] for r in cuda)
    assert all(r["parity"] is True for r in cpu)


def test_bench_bad_options(bundle_dir: Path) -> None:
    assert run_cli("bench", bundle_dir, "--threads", "two").exit_code == 2
    assert run_cli("bench", bundle_dir, "--seconds", "0").exit_code == 2
    assert run_cli("bench", bundle_dir / "nope.tflite").exit_code == 2


def test_verify_plain_file_bad_runtime_is_one_line(plain_files: dict[str, Path]) -> None:
    result = run_cli("verify", plain_files["onnx"], "--runtime", "bogus")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: Invalid value for '--runtime'")
    assert "'bogus' is not one of 'all', 'litert', 'tflite-runtime', 'onnxruntime'" in lines[0]


def test_verify_plain_file_with_a_runtime_of_the_other_format_says_so(plain_files: dict[str, Path]) -> None:
    result = run_cli("verify", plain_files["onnx"], "--runtime", "litert", "--json")
    rows = json.loads(result.stdout)["checks"]
    (skip,) = [r for r in rows if r["ok"] is None]
    assert skip["detail"] == "--runtime litert does not run onnx files; nothing ran"


def test_bench_of_a_file_no_cell_can_measure_exits_1(plain_files: dict[str, Path], tmp_path: Path) -> None:
    # A TFLite file whose tensors are cut off: the measuring process refuses it; nothing was measured.
    data = plain_files["fp32"].read_bytes()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(data[: len(data) // 2])
    result = run_cli("bench", broken, "--seconds", "0.05", "--threads", "1", "--runtime", "litert")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "not measured litert broken.tflite:" in " ".join(result.stdout.split())
