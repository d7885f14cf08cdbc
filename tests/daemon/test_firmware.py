"""firmware/: the systemd unit passes systemd-analyze verify, the scripts pass shellcheck, and
install.sh/uninstall.sh work (dry run, idempotence, backups, both boot-config locations) in a temp root."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
BUNDLE = Path(__file__).resolve().parents[2] / "models" / "imu-activity" / "imu-activity.spinal"
ORIGINAL_BOOT = "arm_64bit=1\ndtparam=audio=on\n# a comment\n"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read(FIRMWARE / "spinal.service")
    return parser


def test_unit_is_hardened_and_notifies():
    svc = unit()["Service"]
    expected = {
        "Type": "notify", "User": "spinal", "SupplementaryGroups": "i2c", "DevicePolicy": "closed",
        "DeviceAllow": "char-i2c rw", "ProtectSystem": "strict", "StateDirectory": "spinal",
        "NoNewPrivileges": "yes", "Restart": "on-failure", "WatchdogSec": "30", "PrivateTmp": "yes",
        "ProtectHome": "yes", "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert svc.get(key) == value, key
    assert svc["ExecStart"].endswith("spinal run --config /etc/spinal/spinal.toml")
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_passes(tmp_path):
    # verify checks that ExecStart exists; point it at a stand-in executable.
    exe = tmp_path / "spinal"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    text = (FIRMWARE / "spinal.service").read_text().replace("/opt/spinal/venv/bin/spinal", str(exe))
    (tmp_path / "spinal.service").write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "spinal.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stderr
    # the check can fail: an unknown key is reported
    (tmp_path / "bad.service").write_text(text.replace("[Service]", "[Service]\nProtectSytem=strict"))
    bad = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "bad.service")],
                         capture_output=True, text=True, timeout=60)
    assert "Unknown key 'ProtectSytem'" in bad.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_security_exposure_is_low(tmp_path):
    exe = tmp_path / "spinal"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    text = (FIRMWARE / "spinal.service").read_text().replace("/opt/spinal/venv/bin/spinal", str(exe))
    (tmp_path / "spinal.service").write_text(text)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(tmp_path / "spinal.service")],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for spinal\.service: ([0-9.]+)", proc.stdout + proc.stderr)
    if m is None:
        pytest.skip(f"this systemd-analyze has no offline security check: {proc.stderr.strip()[:200]}")
    assert float(m.group(1)) <= 2.0, proc.stdout  # systemd rates <= 2 as "OK"; 10 is an unhardened service


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_shellcheck_passes():
    proc = subprocess.run(["shellcheck", "-s", "sh", str(FIRMWARE / "install.sh"), str(FIRMWARE / "uninstall.sh")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sh(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["sh", str(FIRMWARE / script), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_dry_run_changes_nothing(tmp_path):
    (tmp_path / "boot/firmware").mkdir(parents=True)
    (tmp_path / "boot/firmware/config.txt").write_text(ORIGINAL_BOOT)
    before = tree(tmp_path)
    out = sh("install.sh", "--root", str(tmp_path), "--dry-run", "--bundle", str(BUNDLE)).stdout
    assert tree(tmp_path) == before
    assert "would install: " in out and "/etc/systemd/system/spinal.service" in out
    assert "> dtparam=i2c_arm=on" in out and "dry run: nothing was changed" in out
    assert "would run: python3 -m venv" in out


@pytest.mark.parametrize("boot", ["boot/firmware/config.txt", "boot/config.txt"])
def test_install_is_idempotent_backs_up_and_uninstall_reverts(tmp_path, boot):
    cfg = tmp_path / boot
    cfg.parent.mkdir(parents=True)
    cfg.write_text(ORIGINAL_BOOT)
    sh("install.sh", "--root", str(tmp_path), "--no-venv", "--bundle", str(BUNDLE))
    installed = tree(tmp_path)
    for path in ("etc/systemd/system/spinal.service", "etc/udev/rules.d/99-spinal-i2c.rules",
                 "etc/modules-load.d/spinal-i2c.conf", "etc/spinal/spinal.toml", "etc/spinal/spinal.example.toml",
                 "var/lib/spinal/model.spinal"):
        assert path in installed, path
    assert installed["var/lib/spinal/model.spinal"] == BUNDLE.read_bytes()
    text = cfg.read_text()
    assert text.startswith(ORIGINAL_BOOT) and "dtparam=i2c_arm=on\ndtparam=i2c_arm_baudrate=400000\n" in text
    backups = list(cfg.parent.glob("config.txt.spinal-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == ORIGINAL_BOOT

    (tmp_path / "etc/spinal/spinal.toml").write_text("# my edits\n")  # a user's config is never overwritten
    out = sh("install.sh", "--root", str(tmp_path), "--no-venv", "--bundle", str(BUNDLE)).stdout
    assert "already enables I2C" in out and "installed:" not in out
    again = tree(tmp_path)
    assert again == {**installed, "etc/spinal/spinal.toml": b"# my edits\n"}, "a second run changes nothing"

    sh("uninstall.sh", "--root", str(tmp_path))
    assert cfg.read_text() == ORIGINAL_BOOT
    left = tree(tmp_path)
    assert "etc/systemd/system/spinal.service" not in left and "etc/udev/rules.d/99-spinal-i2c.rules" not in left
    assert left["etc/spinal/spinal.toml"] == b"# my edits\n", "config and state are kept without --purge"
    assert len(list(cfg.parent.glob("config.txt.spinal-backup-*"))) == 2, "uninstall backs up before editing"
    out = sh("uninstall.sh", "--root", str(tmp_path), "--purge").stdout
    assert "has no spinal block" in out
    assert not (tmp_path / "etc/spinal").exists() and not (tmp_path / "var/lib/spinal").exists()


def test_install_refuses_a_missing_bundle(tmp_path):
    proc = subprocess.run(["sh", str(FIRMWARE / "install.sh"), "--root", str(tmp_path), "--bundle", "/nope.spinal"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--bundle /nope.spinal: no such file" in proc.stderr
