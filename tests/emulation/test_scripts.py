"""tests/emulation/: the scripts behind `make test-pi` and `make test-x86-noavx512` pass shellcheck (they run
as root and mount things: no unquoted surprises). The targets themselves run in .ci/run, not here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_shellcheck_passes():
    scripts = sorted(str(p) for p in HERE.glob("*.sh"))
    assert len(scripts) >= 3
    proc = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, timeout=60, cwd=HERE)
    assert proc.returncode == 0, proc.stdout


def test_cpuinfo_files_describe_the_pis():
    pi4 = (HERE / "cpuinfo-pi4.txt").read_text()
    pi5 = (HERE / "cpuinfo-pi5.txt").read_text()
    assert pi4.count("CPU part\t: 0xd08") == 4 and "Raspberry Pi 4" in pi4  # 4 x Cortex-A72
    assert pi5.count("CPU part\t: 0xd0b") == 4 and "Raspberry Pi 5" in pi5  # 4 x Cortex-A76
