"""The ``spinal`` command line: :mod:`device.cli.root` builds it, one module per command group.

``app`` and ``main`` are imported on first use, so that a contributor (``toolchain.cli``) can import
:mod:`device.cli.common` without building the app half-way through its own import.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "main"):
        from device.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
