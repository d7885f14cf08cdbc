"""Bundles on disk: verified on open; tampered bundles and malicious archives are refused."""

from __future__ import annotations

import json
import os
import tarfile

import numpy as np
import pytest

from device import bundle as bundle_mod
from device.bundle import file_digest, open_bundle, pack_archive, unpack_archive
from device.errors import BundleError
from tests.conftest import tar_member, write_archive


def test_directory_bundle_opens_and_loads_golden(make_bundle):
    root = make_bundle()
    with open_bundle(root) as b:
        assert b.manifest.name == "tiny-activity"
        assert not b.is_archive
        golden = b.load_golden()
        assert golden["input/x"].shape == (5, 1, 8, 3)
        assert set(golden) == {"input/x", "output/model.fp32.onnx/logits", "output/model.fp32.tflite/logits"}


def test_a_file_swapped_after_the_check_is_not_what_gets_loaded(make_bundle):
    """What is verified is what is loaded: a process that can write the bundle directory swaps a model file
    after open_bundle checked it; the runtime must still read the verified bytes (a private copy)."""
    root = make_bundle()
    with open_bundle(root) as bundle:
        art = bundle.manifest.artifacts[0]
        verified = (root / art.path).read_bytes()
        (root / art.path).write_bytes(b"\0" * len(verified))  # the swap, after the hashes were checked
        assert bundle.path_of(art.path).read_bytes() == verified
        golden = bundle.load_golden()
    assert not bundle.path_of(art.path).exists()  # the private copy is gone with the bundle
    assert golden


def test_archive_round_trip_is_reproducible(make_bundle, tmp_path):
    root = make_bundle()
    a = pack_archive(root, tmp_path / "a.spinal")
    b = pack_archive(root, tmp_path / "b.spinal")
    assert a.read_bytes() == b.read_bytes()
    with open_bundle(a) as opened:
        unpacked = opened.root
        assert opened.is_archive
        assert (unpacked / "model.fp32.onnx").read_bytes() == (root / "model.fp32.onnx").read_bytes()
    assert not unpacked.exists(), "the unpacked copy is removed on close"


def test_changed_byte_in_model_is_refused(make_bundle):
    root = make_bundle()
    path = root / "model.fp32.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.fp32\.tflite \(manifest\.json artifacts\[1\]\): sha256 mismatch"):
        open_bundle(root)


def test_truncated_file_is_refused(make_bundle):
    root = make_bundle()
    path = root / "golden.npz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"golden\.npz \(manifest\.json golden\): size is .* manifest says"):
        open_bundle(root)


def test_missing_file_is_refused(make_bundle):
    root = make_bundle()
    (root / "model.fp32.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.fp32\.onnx .*: file is missing"):
        open_bundle(root)


def test_symlinked_file_is_refused(make_bundle, tmp_path):
    root = make_bundle()
    outside = tmp_path / "outside.onnx"
    os.replace(root / "model.fp32.onnx", outside)
    (root / "model.fp32.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="is a symbolic link"):
        open_bundle(root)


def test_bad_manifest_is_refused(make_bundle):
    root = make_bundle()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["artifacts"][0]["precision"] = "int3"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest\.json: artifacts\[0\]\.precision: 'int3' is not one of"):
        open_bundle(root)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle"):
        open_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        open_bundle(tmp_path / "empty")
    (tmp_path / "junk.spinal").write_bytes(b"this is not a tar file at all" * 20)
    with pytest.raises(BundleError, match=r"junk\.spinal: not a readable \.spinal archive"):
        open_bundle(tmp_path / "junk.spinal")


def test_golden_replaced_after_packing_is_refused(make_bundle):
    root = make_bundle(count=3)
    np.savez(root / "other.npz", **{"input/x": np.zeros((2, 1, 8, 3), np.float32)})
    os.replace(root / "other.npz", root / "golden.npz")
    # A replaced golden file no longer matches its hash: refused at open, before any numbers are read.
    with pytest.raises(BundleError, match=r"golden\.npz"):
        open_bundle(root)


def test_golden_with_fewer_samples_than_the_manifest_says(make_bundle):
    """A consistent bundle (hashes updated) whose golden file holds 2 samples where the manifest says 3."""
    root = make_bundle(count=3)
    np.savez(root / "golden.npz", **{"input/x": np.zeros((2, 1, 8, 3), np.float32)})
    sha, size = file_digest(root / "golden.npz")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["golden"].update(sha256=sha, bytes=size)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with open_bundle(root) as b, pytest.raises(BundleError, match="input/x holds 2 samples, manifest says 3"):
        b.load_golden()


# --------------------------------------------------------------------------------------------
# Malicious archives: each is refused, and nothing is left behind.


@pytest.fixture
def manifest_bytes(make_bundle) -> bytes:
    return (make_bundle() / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tar_member("/etc/passwd"), "member '/etc/passwd' is an absolute path"),
        (tar_member("../escape.onnx"), "member '../escape.onnx' contains '..'"),
        (tar_member("a/../../escape"), "contains '..'"),
        (tar_member("model.fp32.onnx", None, tarfile.SYMTYPE, "/etc/shadow"), "member 'model.fp32.onnx' is a link"),
        (tar_member("model.fp32.onnx", None, tarfile.LNKTYPE, "manifest.json"), "is a link"),
        (tar_member("dev", None, tarfile.CHRTYPE),
         "member 'dev' is a character device; bundles hold regular files only"),
        (tar_member("fifo", None, tarfile.FIFOTYPE), "member 'fifo' is a FIFO"),
    ],
)
def test_malicious_members_refused(tmp_path, manifest_bytes, member, message):
    out = tmp_path / "out"
    out.mkdir()
    archive = write_archive(tmp_path, [tar_member("manifest.json", manifest_bytes), member])
    with pytest.raises(BundleError, match=message.replace("(", r"\(").replace(".", r"\.")):
        unpack_archive(archive, out)
    assert list(out.iterdir()) == [], "nothing is written before every header is checked"


def test_duplicate_member_refused(tmp_path, manifest_bytes):
    archive = write_archive(tmp_path, [tar_member("manifest.json", manifest_bytes), tar_member("manifest.json", b"{}")])
    with pytest.raises(BundleError, match="appears twice"):
        unpack_archive(archive, tmp_path)


def test_huge_member_claim_refused(tmp_path, manifest_bytes, monkeypatch):
    monkeypatch.setattr(bundle_mod, "MAX_FILE_BYTES", 1000)
    members = [tar_member("manifest.json", manifest_bytes[:900]), tar_member("big.bin", b"0" * 5000)]
    archive = write_archive(tmp_path, members)
    with pytest.raises(BundleError, match=r"'big\.bin' claims 4\.9 KiB, more than the 1000 bytes"):
        unpack_archive(archive, tmp_path / "x")


def test_compression_bomb_refused(tmp_path, manifest_bytes, monkeypatch):
    # Each member is under the per-file limit; together they exceed the total: refused before writing.
    monkeypatch.setattr(bundle_mod, "MAX_TOTAL_BYTES", 3 * 1024 * 1024)
    zeros = bytes(2 * 1024 * 1024)
    members = [tar_member("manifest.json", manifest_bytes), tar_member("a.bin", zeros), tar_member("b.bin", zeros)]
    archive = write_archive(tmp_path, members)
    assert archive.stat().st_size < 50_000, "highly compressed"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BundleError, match="members add up to"):
        unpack_archive(archive, out)
    assert list(out.iterdir()) == []


def test_too_many_members_refused(tmp_path, manifest_bytes, monkeypatch):
    monkeypatch.setattr(bundle_mod, "MAX_MEMBERS", 3)
    members = [tar_member("manifest.json", manifest_bytes)] + [tar_member(f"f{i}") for i in range(5)]
    archive = write_archive(tmp_path, members)
    with pytest.raises(BundleError, match="more than 3 members"):
        unpack_archive(archive, tmp_path)


def test_member_not_in_manifest_refused(make_bundle, tmp_path):
    root = make_bundle()
    members = [tar_member(p.name, p.read_bytes()) for p in sorted(root.iterdir())]
    members.append(tar_member("payload.sh", b"rm -rf /"))
    archive = write_archive(tmp_path, members)
    with pytest.raises(BundleError, match=r"member 'payload\.sh' is not listed in manifest\.json"):
        open_bundle(archive)


def test_archive_without_manifest_refused(tmp_path):
    archive = write_archive(tmp_path, [tar_member("model.onnx", b"x")])
    with pytest.raises(BundleError, match=r"no manifest\.json inside"):
        open_bundle(archive)


def test_archive_with_tampered_member_refused(make_bundle, tmp_path):
    root = make_bundle()
    members = []
    for p in sorted(root.iterdir()):
        data = p.read_bytes()
        if p.name == "model.fp32.onnx":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        members.append(tar_member(p.name, data))
    with pytest.raises(BundleError, match=r"evil\.spinal/model\.fp32\.onnx .*sha256 mismatch"):
        open_bundle(write_archive(tmp_path, members))


def test_failed_open_leaves_no_temporary_directory(make_bundle, tmp_path):
    root = make_bundle()
    (root / "model.fp32.onnx").write_bytes(b"changed")
    work = tmp_path / "work"
    work.mkdir()
    archive = write_archive(tmp_path, [tar_member(p.name, p.read_bytes()) for p in sorted(root.iterdir())])
    with pytest.raises(BundleError):
        open_bundle(archive, workdir=work)
    assert list(work.iterdir()) == []
