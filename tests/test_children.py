"""device.children: a child's end named the same way by every caller (probes, smoke checks, kernel paths)."""

from __future__ import annotations

import subprocess
import sys

from device.children import exit_name


def test_a_child_killed_by_a_signal_is_named_by_the_signal() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGABRT)"],
                          check=False)
    assert exit_name(proc.returncode) == "SIGABRT"


def test_exit_codes_and_unknown_signals_are_named_plainly() -> None:
    assert exit_name(3) == "exit 3"
    assert exit_name(0) == "exit 0"
    assert exit_name(-250) == "signal 250"  # no such signal: named by number instead of raising
