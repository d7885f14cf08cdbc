"""Signed bundles: ed25519 over the manifest; unsigned, unknown-key and changed bundles are refused."""

from __future__ import annotations

import json
import stat

import pytest

from device.bundle import open_bundle, pack_archive, sign_bundle
from device.errors import BadInput, BundleError
from device.signing import SIGNATURE_NAME, SignatureError, generate_keypair, load_public_key
from tests.conftest import run_cli


@pytest.fixture
def keys(tmp_path):
    private, public = generate_keypair(tmp_path / "release")
    other_private, other_public = generate_keypair(tmp_path / "other")
    return {"private": private, "public": load_public_key(public), "public_path": public,
            "other_private": other_private, "other_public": load_public_key(other_public)}


def test_keygen_writes_private_key_0600_and_refuses_overwrite(tmp_path):
    private, public = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    with pytest.raises(BadInput, match="already exists; refusing to overwrite"):
        generate_keypair(tmp_path / "k")


def test_signed_directory_bundle_opens_under_require_signature(make_bundle, keys):
    root = make_bundle()
    key_id = sign_bundle(root, keys["private"])
    assert key_id == keys["public"].key_id
    with open_bundle(root, trusted_keys=[keys["other_public"], keys["public"]], require_signature=True) as b:
        assert b.signed_by.key_id == key_id


def test_signed_archive_round_trip(make_bundle, keys, tmp_path):
    archive = pack_archive(make_bundle(), tmp_path / "tiny.spinal")
    sign_bundle(archive, keys["private"])
    with open_bundle(archive, trusted_keys=[keys["public"]], require_signature=True) as b:
        assert (b.root / SIGNATURE_NAME).is_file()
        assert b.signed_by.key_id == keys["public"].key_id


def test_unsigned_bundle_refused_when_required(make_bundle, keys):
    with pytest.raises(SignatureError, match=r"bundle is not signed .* sign it with: spinal sign"):
        open_bundle(make_bundle(), trusted_keys=[keys["public"]], require_signature=True)


def test_unsigned_bundle_accepted_when_not_required(make_bundle, keys):
    with open_bundle(make_bundle(), trusted_keys=[keys["public"]]) as b:
        assert b.signed_by is None


def test_unknown_key_refused(make_bundle, keys):
    root = make_bundle()
    sign_bundle(root, keys["other_private"])
    with pytest.raises(SignatureError, match=f"signed by key {keys['other_public'].key_id}, which is not trusted"):
        open_bundle(root, trusted_keys=[keys["public"]], require_signature=True)


def test_manifest_changed_after_signing_refused(make_bundle, keys):
    root = make_bundle()
    sign_bundle(root, keys["private"])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["task"]["labels"] = ["idle", "walk", "run", "fall"]  # still a valid manifest
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SignatureError, match=r"does not match manifest\.json; the bundle was changed after signing"):
        open_bundle(root, trusted_keys=[keys["public"]], require_signature=True)
    # With trusted keys configured, a present-but-bad signature is refused even when not required.
    with pytest.raises(SignatureError):
        open_bundle(root, trusted_keys=[keys["public"]])


def test_model_changed_after_signing_refused(make_bundle, keys):
    root = make_bundle()
    sign_bundle(root, keys["private"])
    data = bytearray((root / "model.fp32.onnx").read_bytes())
    data[50] ^= 1
    (root / "model.fp32.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        open_bundle(root, trusted_keys=[keys["public"]], require_signature=True)


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"algorithm": "rsa", "key_id": "x", "signature": ""}',
                                     b'{"algorithm": "ed25519", "key_id": "x", "signature": "AAAA"}'])
def test_malformed_signature_file(make_bundle, keys, content):
    root = make_bundle()
    (root / SIGNATURE_NAME).write_bytes(content)
    with pytest.raises(SignatureError, match="malformed signature file"):
        open_bundle(root, trusted_keys=[keys["public"]], require_signature=True)


def test_required_without_trusted_keys(make_bundle):
    with pytest.raises(SignatureError, match="no trusted keys are configured"):
        open_bundle(make_bundle(), require_signature=True)


def test_world_readable_private_key_refused(make_bundle, keys):
    keys["private"].chmod(0o644)
    with pytest.raises(BadInput, match="readable by group or others; run: chmod 600"):
        sign_bundle(make_bundle(), keys["private"])


def test_public_key_is_not_a_private_key(make_bundle, keys):
    keys["public_path"].chmod(0o600)
    with pytest.raises(BadInput, match="not an unencrypted PEM private key"):
        sign_bundle(make_bundle(), keys["public_path"])


def test_cli_keygen_sign_verify(make_bundle, tmp_path):
    root = make_bundle()
    result = run_cli("keygen", "--out", tmp_path / "fleet")
    assert result.exit_code == 0, result.stderr
    assert run_cli("sign", root, "--key", tmp_path / "fleet.key").exit_code == 0
    ok = run_cli("verify", root, "--trusted-key", tmp_path / "fleet.pub", "--require-signature")
    assert ok.exit_code == 0, ok.stderr
    assert "signed by key" in ok.stdout
    (root / "manifest.sig").unlink()
    refused = run_cli("verify", root, "--trusted-key", tmp_path / "fleet.pub", "--require-signature")
    assert refused.exit_code == 2
    assert "bundle is not signed" in refused.stderr
