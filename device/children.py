"""The project's child interpreters (probes, smoke checks, the daemon's hand-over, the converter's kernel
paths): their environment, with this package first on their path so that a child imports the same code as
its parent whether the package is installed or run from a source tree, and how their end is named."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with :data:`PACKAGE_ROOT` first on ``PYTHONPATH``, plus ``extra``."""
    path = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def exit_name(returncode: int) -> str:
    """A child's end in words: the signal's name (``SIGSEGV``) for a negative return code, else ``exit N``."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"
