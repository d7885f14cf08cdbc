"""The ``spinal`` CLI: version, inspect and verify on bundles and plain model files; exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from device import __version__
from device.bundle import pack_archive
from tests.conftest import DATA, run_cli


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"spinal {__version__}"


def test_console_script_runs_and_reports_errors_in_one_line(tmp_path):
    """The installed entry point, as a user runs it: one error line, exit 2, no traceback."""
    exe = shutil.which("spinal", path=os.path.dirname(sys.executable))
    assert exe, "the spinal console script is installed next to the interpreter"
    proc = subprocess.run([exe, "inspect", str(tmp_path / "missing.onnx")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.onnx'}: no such file"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_inspect_model_file_json(fmt):
    result = run_cli("inspect", DATA / f"tiny.{fmt}", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == fmt
    assert info["bytes"] == (DATA / f"tiny.{fmt}").stat().st_size
    assert [i["shape"] for i in info["inputs"]] == [[1, 8, 3]]
    assert [o["shape"] for o in info["outputs"]] == [[1, 4]]
    assert info["inputs"][0]["dtype"] == "float32"
    assert info["quantized"] is False
    expected_ops = {"onnx": {"Reshape": 1, "Gemm": 1}, "tflite": {"RESHAPE": 1, "FULLY_CONNECTED": 1}}[fmt]
    assert info["ops"] == expected_ops


def test_inspect_model_file_table():
    result = run_cli("inspect", DATA / "tiny.onnx")
    assert result.exit_code == 0
    assert "Gemm×1" in result.stdout
    assert "[1, 8, 3]" in result.stdout


@pytest.mark.parametrize("archive", [False, True])
def test_inspect_bundle(make_bundle, tmp_path, archive):
    path = make_bundle()
    if archive:
        path = pack_archive(path, tmp_path / "tiny.spinal")
    table = run_cli("inspect", path)
    assert table.exit_code == 0, table.stderr
    assert "tiny-activity" in table.stdout
    assert "imu.accel_x" in table.stdout
    assert "classes: idle, walk, run, jump" in table.stdout
    data = json.loads(run_cli("inspect", path, "--json").stdout)
    assert data["name"] == "tiny-activity"
    assert data["models"]["model.fp32.tflite"]["ops"] == {"RESHAPE": 1, "FULLY_CONNECTED": 1}
    assert data["inputs"][0]["layout"] == "NTC"


@pytest.mark.parametrize("archive", [False, True])
def test_verify_good_bundle(make_bundle, tmp_path, archive):
    path = make_bundle()
    if archive:
        path = pack_archive(path, tmp_path / "tiny.spinal")
    result = run_cli("verify", path, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    checked = " ".join(c["check"] for c in report["checks"])
    assert "model.fp32.onnx" in checked and "golden.npz" in checked


def test_verify_tampered_bundle_exit_2(make_bundle):
    root = make_bundle()
    with open(root / "model.fp32.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0x55]))
    result = run_cli("verify", root)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "model.fp32.onnx" in lines[0] and "sha256 mismatch" in lines[0]


def test_verify_plain_model_files():
    for fmt in ("onnx", "tflite"):
        result = run_cli("verify", DATA / f"tiny.{fmt}")
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("wrong.onnx", (DATA / "tiny.tflite").read_bytes(), "TFLite model, not an ONNX one; rename it to wrong.tflite"),
        ("wrong.tflite", (DATA / "tiny.onnx").read_bytes(), "an ONNX model, not a TFLite one; rename it to wrong.onnx"),
        ("trunc.onnx", (DATA / "tiny.onnx").read_bytes()[:300], "truncated ONNX file"),
        ("empty.onnx", b"", "file is empty"),
        ("text.onnx", b"hello world, not a model", "not a model file"),
        ("trunc.tflite", (DATA / "tiny.tflite").read_bytes()[:200], "the TFLite runtime cannot load it"),
        ("model.pt", b"\x80\x02}q\x00.", "unknown model type (expected a .onnx or .tflite file"),
    ],
)
def test_bad_model_files_exit_2(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    for command in ("inspect", "verify"):
        result = run_cli(command, path)
        assert result.exit_code == 2, (command, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(path) in lines[0]
        assert message in lines[0]


def test_usage_error_exit_2():
    result = run_cli("inspect")
    assert result.exit_code == 2


def test_host_command_without_host_extra_says_how_to_install(tmp_path, monkeypatch):
    """On a device (no onnx), `spinal convert` explains which extra to install instead of a traceback."""
    import importlib.util

    if os.environ.get("SPINAL_DEVICE_ONLY") != "1":  # simulate the device: the host stack is not importable
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name.split(".")[0] == "onnx" else real(name, *a))
    result = run_cli("convert", DATA / "tiny.onnx", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: this command needs the converter stack (onnx not installed); install it with: "
        "pip install 'spinal[host]'"
    )
    assert not (tmp_path / "out").exists()


def test_an_os_error_is_one_line_and_exit_2(monkeypatch, tmp_path):
    """Disk full, permission denied...: the environment's fault, reported in one line, never a traceback."""
    import errno

    from device import signing as cli_signing  # spinal keygen imports generate_keypair from it when it runs

    def full(_prefix):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "k.key"))

    monkeypatch.setattr(cli_signing, "generate_keypair", full)
    result = run_cli("keygen", "--out", tmp_path / "k")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'k.key'}: No space left on device"


def test_error_text_is_printed_as_written(tmp_path):
    """Rich markup and emoji codes in a user's path never change the message."""
    path = tmp_path / "mods:boom:[bold]x[/].onnx"
    result = run_cli("inspect", path)
    assert result.stderr.strip() == f"error: {path}: no such file"
