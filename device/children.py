"""The environment of the project's child interpreters (probes, smoke checks, the daemon's hand-over, the
converter's kernel paths): this package first on their path, so a child imports the same code as its parent
whether the package is installed or run from a source tree."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with :data:`PACKAGE_ROOT` first on ``PYTHONPATH``, plus ``extra``."""
    path = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}
