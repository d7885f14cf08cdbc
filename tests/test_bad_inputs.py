"""Walks ``docs/bad-inputs.md``: every bad input listed there gets exactly the documented message.

Each row of the catalogue's table has an id; :data:`CASES` maps the id to a function that
builds the bad input under a temporary directory and returns the ``spinal`` arguments to try.
The test runs the command and compares its exit code and its one stderr line with the row
(``<tmp>`` stands for the temporary directory). A row without a case, or a case without a
row, fails the test, so the catalogue cannot go stale.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from device.bundle import pack_archive, sign_bundle
from device.signing import generate_keypair
from tests.conftest import DATA, BundleFactory, run_cli, tar_member, write_archive

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
CASES: dict[str, Callable[[Path], list[str]]] = {}


def case(case_id: str) -> Callable[[Callable[[Path], list[str]]], Callable[[Path], list[str]]]:
    def register(func: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        assert case_id not in CASES, f"duplicate case id {case_id}"
        CASES[case_id] = func
        return func

    return register


# --------------------------------------------------------------------------------------------
# Helpers


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _bundle(tmp: Path) -> Path:
    return BundleFactory(tmp)("bundle")


def _edit_manifest(root: Path, edit: Callable[[dict], None]) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _manifest_member(tmp: Path):
    return tar_member("manifest.json", (_bundle(tmp) / "manifest.json").read_bytes())


# --------------------------------------------------------------------------------------------
# Model files


@case("M1")
def truncated_onnx(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.onnx", (DATA / "tiny.onnx").read_bytes()[:300]))]


@case("M2")
def truncated_tflite(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.tflite", (DATA / "tiny.tflite").read_bytes()[:200]))]


@case("M3")
def empty_model(tmp: Path) -> list[str]:
    return ["verify", str(_write(tmp, "model.onnx", b""))]


@case("M4")
def tflite_named_onnx(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.onnx", (DATA / "tiny.tflite").read_bytes()))]


@case("M5")
def onnx_named_tflite(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.tflite", (DATA / "tiny.onnx").read_bytes()))]


@case("M6")
def text_named_onnx(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.onnx", b"<html>404 not found</html>"))]


@case("M7")
def unknown_suffix(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.pt", b"PK\x03\x04torch"))]


@case("M8")
def missing_model(tmp: Path) -> list[str]:
    return ["inspect", str(tmp / "nowhere.onnx")]


@case("M9")
def missing_external_data(tmp: Path) -> list[str]:
    # An ONNX file whose initializer lives in 'weights.bin', which is not there.
    from device.onnx_reader import read_onnx

    def field(number: int, wire: int, payload: bytes) -> bytes:
        key = bytes([number << 3 | wire])
        return key + (bytes([len(payload)]) + payload if wire == 2 else payload)

    entry = field(1, 2, b"location") + field(2, 2, b"weights.bin")
    tensor = field(8, 2, b"W") + field(13, 2, entry) + field(14, 0, b"\x01")
    graph = field(5, 2, tensor) + field(12, 2, field(1, 2, b"y"))
    model = field(1, 0, b"\x08") + field(7, 2, graph)
    assert read_onnx(model).external_data == {"weights.bin"}
    return ["inspect", str(_write(tmp, "model.onnx", model))]


# --------------------------------------------------------------------------------------------
# Bundles and manifests


@case("B1")
def changed_byte(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    data = bytearray((root / "model.fp32.tflite").read_bytes())
    data[600] ^= 0x01
    (root / "model.fp32.tflite").write_bytes(bytes(data))
    return ["verify", str(root)]


@case("B2")
def missing_artifact(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    (root / "model.fp32.onnx").unlink()
    return ["verify", str(root)]


@case("B3")
def truncated_golden(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    (root / "golden.npz").write_bytes((root / "golden.npz").read_bytes()[:-7])
    return ["verify", str(root)]


@case("B4")
def manifest_not_json(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    (root / "manifest.json").write_text('{"format_version": 1,\n "name": "x",,}')
    return ["inspect", str(root)]


@case("B5")
def manifest_future_version(tmp: Path) -> list[str]:
    return ["verify", str(_edit_manifest(_bundle(tmp), lambda m: m.update(format_version=2)))]


@case("B6")
def manifest_bad_sha(tmp: Path) -> list[str]:
    return ["verify", str(_edit_manifest(_bundle(tmp), lambda m: m["artifacts"][1].update(sha256="deadbeef")))]


@case("B7")
def manifest_path_traversal(tmp: Path) -> list[str]:
    root = _edit_manifest(_bundle(tmp), lambda m: m["artifacts"][0].update(path="../../etc/model.onnx"))
    return ["verify", str(root)]


@case("B8")
def manifest_wrong_type(tmp: Path) -> list[str]:
    return ["verify", str(_edit_manifest(_bundle(tmp), lambda m: m["artifacts"][0].update(bytes="620")))]


@case("B9")
def manifest_labels_missing(tmp: Path) -> list[str]:
    return ["inspect", str(_edit_manifest(_bundle(tmp), lambda m: m["task"].pop("labels")))]


@case("B10")
def manifest_layout_mismatch(tmp: Path) -> list[str]:
    return ["inspect", str(_edit_manifest(_bundle(tmp), lambda m: m["inputs"][0].update(layout="NCHW")))]


@case("B11")
def symlinked_artifact(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    target = tmp / "elsewhere.onnx"
    (root / "model.fp32.onnx").rename(target)
    (root / "model.fp32.onnx").symlink_to(target)
    return ["verify", str(root)]


@case("B13")
def manifest_unknown_dsp_block(tmp: Path) -> list[str]:
    def edit(m: dict) -> None:
        m["inputs"][0]["preprocessing"] = [{"block": "highpass", "cutoff_hz": 0.3}, {"block": "wavelet", "level": 3}]
    return ["verify", str(_edit_manifest(_bundle(tmp), edit))]


@case("B14")
def manifest_bad_dsp_parameter(tmp: Path) -> list[str]:
    def edit(m: dict) -> None:
        m["inputs"][0]["preprocessing"] = [{"block": "lowpass", "cutoff_hz": "5 Hz"}]
    return ["inspect", str(_edit_manifest(_bundle(tmp), edit))]


@case("B12")
def directory_without_manifest(tmp: Path) -> list[str]:
    (tmp / "models").mkdir()
    return ["verify", str(tmp / "models") + "/"]


# --------------------------------------------------------------------------------------------
# Archives


@case("A1")
def archive_absolute_path(tmp: Path) -> list[str]:
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), tar_member("/etc/cron.d/evil")]))]


@case("A2")
def archive_dotdot(tmp: Path) -> list[str]:
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), tar_member("../../.bashrc")]))]


@case("A3")
def archive_symlink(tmp: Path) -> list[str]:
    member = tar_member("model.fp32.onnx", None, tarfile.SYMTYPE, "/etc/shadow")
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), member]))]


@case("A4")
def archive_hardlink(tmp: Path) -> list[str]:
    member = tar_member("model.fp32.onnx", None, tarfile.LNKTYPE, "manifest.json")
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), member]))]


@case("A5")
def archive_device(tmp: Path) -> list[str]:
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), tar_member("sda", None, tarfile.BLKTYPE)]))]


@case("A6")
def archive_duplicate(tmp: Path) -> list[str]:
    manifest = _manifest_member(tmp)
    return ["verify", str(write_archive(tmp, [manifest, tar_member("manifest.json", b"{}")]))]


@case("A7")
def archive_huge_member(tmp: Path) -> list[str]:
    # Only the header: it claims 3 GiB, and is refused before a byte of it is read.
    info, _ = tar_member("model.fp32.onnx", None)
    info.size = 3 << 30
    return ["verify", str(write_archive(tmp, [_manifest_member(tmp), (info, None)]))]


@case("A8")
def archive_stray_member(tmp: Path) -> list[str]:
    root = _bundle(tmp)
    members = [tar_member(p.name, p.read_bytes()) for p in sorted(root.iterdir())]
    members.append(tar_member("install.sh", b"#!/bin/sh"))
    return ["verify", str(write_archive(tmp, members))]


@case("A9")
def archive_not_tar(tmp: Path) -> list[str]:
    return ["inspect", str(_write(tmp, "model.spinal", b"\x1f\x8b" + b"garbage" * 50))]


@case("A10")
def archive_without_manifest(tmp: Path) -> list[str]:
    return ["verify", str(write_archive(tmp, [tar_member("model.fp32.onnx", (DATA / "tiny.onnx").read_bytes())]))]


# --------------------------------------------------------------------------------------------
# Signatures


def _keys(tmp: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp / "release")


@case("S1")
def unsigned_required(tmp: Path) -> list[str]:
    _, public = _keys(tmp)
    return ["verify", str(_bundle(tmp)), "--trusted-key", str(public), "--require-signature"]


@case("S2")
def unknown_signer(tmp: Path) -> list[str]:
    _, public = _keys(tmp)
    stranger, _ = generate_keypair(tmp / "stranger")
    root = _bundle(tmp)
    sign_bundle(root, stranger)
    return ["verify", str(root), "--trusted-key", str(public), "--require-signature"]


@case("S3")
def manifest_changed_after_signing(tmp: Path) -> list[str]:
    private, public = _keys(tmp)
    root = _bundle(tmp)
    sign_bundle(root, private)
    _edit_manifest(root, lambda m: m.update(description="retrained"))
    return ["verify", str(root), "--trusted-key", str(public), "--require-signature"]


@case("S4")
def signed_archive_tampered(tmp: Path) -> list[str]:
    private, public = _keys(tmp)
    archive = pack_archive(_bundle(tmp), tmp / "tiny.spinal")
    sign_bundle(archive, private)
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    tampered = [(m, data.replace(b"tiny linear", b"tiny LINEAR")) for m, data in members]
    return ["verify", str(write_archive(tmp, tampered)), "--trusted-key", str(public), "--require-signature"]


@case("S5")
def world_readable_key(tmp: Path) -> list[str]:
    private, _ = _keys(tmp)
    private.chmod(0o644)
    return ["sign", str(_bundle(tmp)), "--key", str(private)]


@case("S6")
def keygen_overwrite(tmp: Path) -> list[str]:
    _keys(tmp)
    return ["keygen", "--out", str(tmp / "release")]


# --------------------------------------------------------------------------------------------
# Device configuration (`spinal run --config FILE --check`)

BASE_CONFIG = """device_id = "pi-kitchen"

[model]
bundle = "model.spinal"

[[sensors]]
id = "imu"
driver = "mpu6050"
address = 0x68
rate_hz = 10
"""


def _config(tmp: Path, old: str = "", new: str = "", append: str = "") -> list[str]:
    assert old in BASE_CONFIG
    path = _write(tmp, "spinal.toml", (BASE_CONFIG.replace(old, new, 1) + append).encode())
    return ["run", "--config", str(path), "--check"]


@case("C1")
def config_typo(tmp: Path) -> list[str]:
    return _config(tmp, "address = 0x68", "adress = 0x68")


@case("C2")
def config_wrong_type(tmp: Path) -> list[str]:
    return _config(tmp, "rate_hz = 10", 'rate_hz = "fast"')


@case("C3")
def config_unknown_driver(tmp: Path) -> list[str]:
    return _config(tmp, '"mpu6050"', '"mpu9250"')


@case("C4")
def config_address_out_of_range(tmp: Path) -> list[str]:
    return _config(tmp, "0x68", "0x90")


@case("C5")
def config_unknown_table(tmp: Path) -> list[str]:
    return _config(tmp, "[model]", "[modle]")


@case("C6")
def config_toml_syntax(tmp: Path) -> list[str]:
    return _config(tmp, 'device_id = "pi-kitchen"', "device_id = pi-kitchen")


@case("C7")
def config_unknown_sink(tmp: Path) -> list[str]:
    return _config(tmp, append='\n[[sinks]]\ntype = "kafka"\n')


@case("C8")
def config_missing_file(tmp: Path) -> list[str]:
    return ["run", "--config", str(tmp / "spinal.toml"), "--check"]


@case("C9")
def config_signature_without_keys(tmp: Path) -> list[str]:
    return _config(tmp, 'bundle = "model.spinal"', 'bundle = "model.spinal"\nrequire_signature = true')


@case("C10")
def config_missing_trusted_key(tmp: Path) -> list[str]:
    return _config(tmp, 'bundle = "model.spinal"', 'bundle = "model.spinal"\ntrusted_keys = ["keys/release.pub"]')


# --------------------------------------------------------------------------------------------
# Sensors


@case("D1")
def missing_bus(tmp: Path) -> list[str]:
    return ["sensors", "scan", "--bus", "97"]


@case("D2")
def unknown_sensor_driver(tmp: Path) -> list[str]:
    return ["sensors", "read", "bme680", "--sim"]


# --------------------------------------------------------------------------------------------
# Calibration and validation data (`spinal convert`)


def _convert(tmp: Path, option: str, name: str, arrays: dict | None = None, raw: bytes | None = None) -> list[str]:
    import numpy as np

    path = tmp / name
    if arrays is not None:
        np.savez(path, **arrays)
    elif raw is not None:
        path.write_bytes(raw)
    return ["convert", str(DATA / "tiny.onnx"), "-o", str(tmp / "out"), option, str(path), "--formats", "onnx-fp32"]


def _recording(tmp: Path, labels: list[str]) -> Path:
    from device import recording

    path = tmp / "rec.csv"
    n = 40
    samples = [[0.1 * i, 0.0, 9.81] for i in range(n)]
    import numpy as np

    rec = recording.Recording(np.asarray(samples), ("imu.accel_x", "imu.accel_y", "imu.accel_z"), 10.0,
                              labels=np.asarray([labels[i * len(labels) // n] for i in range(n)], dtype=object))
    recording.write(path, rec)
    return path


@case("K8")
def preprocess_unknown_block(tmp: Path) -> list[str]:
    return ["convert", str(DATA / "tiny.onnx"), "-o", str(tmp / "out"), "--formats", "onnx-fp32", "--window", "8",
            "--preprocess", "bandpass:low_hz=1", "--calibration", str(_recording(tmp, ["a"]))]


@case("K9")
def preprocess_without_recordings(tmp: Path) -> list[str]:
    return ["convert", str(DATA / "tiny.onnx"), "-o", str(tmp / "out"), "--formats", "onnx-fp32", "--window", "8",
            "--preprocess", "highpass:cutoff_hz=0.3"]


@case("K10")
def recording_label_not_a_class(tmp: Path) -> list[str]:
    return ["convert", str(DATA / "tiny.onnx"), "-o", str(tmp / "out"), "--formats", "onnx-fp32", "--window", "8",
            "--preprocess", "highpass:cutoff_hz=0.3", "--calibration", str(_recording(tmp, ["a", "jumping"])),
            "--labels", "a,b,c,d"]


@case("K1")
def calibration_wrong_shape(tmp: Path) -> list[str]:
    import numpy as np

    return _convert(tmp, "--calibration", "cal.npz", {"x": np.zeros((10, 5, 3), np.float32)})


@case("K2")
def calibration_wrong_key(tmp: Path) -> list[str]:
    import numpy as np

    return _convert(tmp, "--calibration", "cal.npz", {"imu": np.zeros((10, 8, 3), np.float32)})


@case("K3")
def calibration_csv_without_rows(tmp: Path) -> list[str]:
    return _convert(tmp, "--calibration", "cal.csv", raw=b"accel_x,accel_y\n")


@case("K4")
def calibration_missing(tmp: Path) -> list[str]:
    return _convert(tmp, "--calibration", "cal.npz")


@case("K5")
def validation_nan(tmp: Path) -> list[str]:
    import numpy as np

    arrays = {"x": np.full((10, 8, 3), np.nan, np.float32), "labels": np.zeros(10, np.int64)}
    return _convert(tmp, "--validation", "val.npz", arrays)


@case("K6")
def validation_label_count(tmp: Path) -> list[str]:
    import numpy as np

    return _convert(tmp, "--validation", "val.npz", {"x": np.zeros((10, 8, 3), np.float32),
                                                      "labels": np.zeros(7, np.int64)})


@case("K7")
def validation_label_out_of_range(tmp: Path) -> list[str]:
    import numpy as np

    labels = np.array([0, 1, 2, 9, 1, 1, 1, 1, 1, 1], np.int64)
    return _convert(tmp, "--validation", "val.npz", {"x": np.zeros((10, 8, 3), np.float32), "labels": labels})


# --------------------------------------------------------------------------------------------
# The walk


# | id | what | exit | `message` |  (a message holding backticks is written ``like this``)
ROW = re.compile(
    r"^\|\s*(?P<id>[A-Z]+\d+)\s*\|(?P<what>[^|]*)\|\s*(?P<exit>\d)\s*\|"
    r"\s*(?P<ticks>`+) ?(?P<message>.*?) ?(?P=ticks)\s*\|\s*$"
)


def catalogue_rows() -> dict[str, tuple[int, str]]:
    rows: dict[str, tuple[int, str]] = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            assert match["id"] not in rows, f"duplicate row {match['id']}"
            rows[match["id"]] = (int(match["exit"]), match["message"].replace("\\|", "|"))
    return rows


def test_catalogue_and_cases_agree():
    rows = catalogue_rows()
    assert len(rows) >= 30
    assert sorted(set(rows) - set(CASES)) == [], "rows in docs/bad-inputs.md without a case here"
    assert sorted(set(CASES) - set(rows)) == [], "cases here without a row in docs/bad-inputs.md"


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input_gets_the_documented_message(case_id: str, tmp_path: Path):
    expected_exit, expected_message = catalogue_rows()[case_id]
    argv = CASES[case_id](tmp_path)
    result = run_cli(*argv)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{case_id}: expected one stderr line, got {result.stderr!r}"
    # Key ids are random per run (fresh keys): the catalogue writes them as <key-id>.
    actual = re.sub(r"\b[0-9a-f]{16}\b", "<key-id>", lines[0].replace(str(tmp_path), "<tmp>"))
    assert actual == expected_message
    assert result.exit_code == expected_exit
