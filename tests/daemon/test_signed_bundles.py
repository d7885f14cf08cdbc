"""``require_signature``: the daemon runs only bundles signed by a trusted key, at start and at every reload."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from device.bundle import sign_bundle
from device.config import ConfigError, load_config
from device.signing import generate_keypair
from tests.daemon.test_daemon import events, finish, predictions, records, spawn, wait_for, write_config


def signed_config(tmp: Path, bundle: Path, keys: list[Path], require: bool = True) -> Path:
    cfg = write_config(tmp, bundle)
    key_list = ", ".join(f'"{k}"' for k in keys)
    text = cfg.read_text().replace(
        "watch_interval_s = 0.2",
        f"watch_interval_s = 0.2\ntrusted_keys = [{key_list}]\nrequire_signature = {str(require).lower()}", 1)
    cfg.write_text(text)
    return cfg


@pytest.fixture
def release_keys(tmp_path):
    keydir = tmp_path / "keys"
    keydir.mkdir()
    private, public = generate_keypair(keydir / "release")
    stranger, _ = generate_keypair(keydir / "stranger")
    return private, public, stranger


def _signed_copy(src: Path, dest: Path, key: Path | None) -> Path:
    shutil.copy(src, dest)
    if key is not None:
        sign_bundle(dest, key)
    return dest


def test_unsigned_bundle_is_refused_at_start(tmp_path, bundles, release_keys):
    _, public, _ = release_keys
    rc, out, err = finish(spawn(signed_config(tmp_path, bundles["good"], [public]), "--duration", "5"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2, err
    assert len(errors) == 1 and "bundle is not signed (no manifest.sig) and a signature is required" in errors[0]
    assert out == ""


def test_reloads_accept_only_bundles_signed_by_a_trusted_key(tmp_path, bundles, release_keys):
    private, public, stranger = release_keys
    staging = tmp_path / "staging"
    staging.mkdir()
    first = _signed_copy(bundles["good"], staging / "good.spinal", private)
    cfg = signed_config(tmp_path, first, [public])
    out, model = tmp_path / "out.jsonl", tmp_path / "model.spinal"
    proc = spawn(cfg)
    try:
        wait_for(lambda: predictions(records(out)), what="a first prediction from the signed bundle")

        def deploy(path: Path) -> None:
            tmp = model.with_suffix(".new")
            shutil.copy(path, tmp)
            os.replace(tmp, model)
            proc.send_signal(signal.SIGHUP)

        refused = [
            (_signed_copy(bundles["good2"], staging / "unsigned.spinal", None), "bundle is not signed"),
            (_signed_copy(bundles["good2"], staging / "stranger.spinal", stranger), "which is not trusted"),
        ]
        for path, why in refused:
            before = len(events(records(out), "reload_failed"))
            deploy(path)
            failed = wait_for(lambda b=before: events(records(out), "reload_failed")[b:], what=f"{path.name} refused")
            assert why in failed[0]["data"]["error"]
            assert failed[0]["data"]["kept"]["name"] == "tiny-imu"

        deploy(_signed_copy(bundles["good2"], staging / "release.spinal", private))
        loaded = wait_for(lambda: [e for e in events(records(out), "model_loaded") if e["data"]["generation"] == 2],
                          what="the signed bundle loaded")
        assert loaded[0]["data"]["name"] == "tiny-imu-v2"
    finally:
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc)
    assert code == 0, err


def test_config_requires_trusted_keys_for_require_signature(tmp_path, bundles):
    cfg = signed_config(tmp_path, bundles["good"], [])
    with pytest.raises(ConfigError, match=r"model\.require_signature: needs \[model\] trusted_keys"):
        load_config(cfg)


def test_config_names_a_missing_trusted_key(tmp_path, bundles):
    cfg = signed_config(tmp_path, bundles["good"], [tmp_path / "nowhere.pub"])
    with pytest.raises(ConfigError, match=r"model\.trusted_keys\[0\]: .*nowhere\.pub: no such public key file"):
        load_config(cfg)
