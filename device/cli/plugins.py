"""The commands other packages add to ``spinal``: the ``spinal.commands`` entry-point group.

Each entry point names a ``register(app)`` function that adds its commands to the root Typer app
(``convert = "toolchain.cli:register"``). The group is read from the installed distributions' ``entry_points.txt``
directly: ``importlib.metadata`` costs about as many instructions as the rest of ``spinal --help`` together.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

COMMAND_GROUP = "spinal.commands"
# The contributors this distribution declares in pyproject.toml, loaded directly when the installed metadata does
# not list them (a source tree on PYTHONPATH, an editable install made before they were declared). Strings only:
# device/ never imports the converter; it asks for it by name where it is installed.
OWN_CONTRIBUTORS = {"convert": "toolchain.cli:register"}

Register = Callable[["typer.Typer"], None]


def entry_points(group: str, path: Iterable[str] | None = None) -> dict[str, str]:
    """``{name: "module:attr"}`` of the entry points in ``group`` of the distributions installed on ``path``
    (default ``sys.path``), the first distribution of a name winning as in ``importlib.metadata``."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for base in sys.path if path is None else path:
        try:
            names = os.listdir(base or ".")
        except OSError:  # a zip file, a missing directory
            continue
        for name in names:
            stem, _, suffix = name.rpartition(".")
            if suffix not in ("dist-info", "egg-info"):
                continue
            dist = re.sub(r"[-_.]+", "_", stem.split("-")[0]).lower()
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(base or ".", name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:  # a distribution without entry points
                continue
            for key, value in _section(text, group):
                found.setdefault(key, value)
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the ``[group]`` section of an ``entry_points.txt`` (an INI file)."""
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            inside = line == f"[{group}]"
        elif inside and "=" in line:
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def contributors() -> dict[str, str]:
    """The ``spinal.commands`` entry points, plus this distribution's own contributors that the metadata does not
    list but that are importable here."""
    found = entry_points(COMMAND_GROUP)
    for name, value in OWN_CONTRIBUTORS.items():
        if name not in found and value not in found.values() and _importable(value.partition(":")[0]):
            found[name] = value
    return found


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False


def load(name: str, value: str) -> Register | None:
    """The ``register`` function an entry point names, or None (with a warning on stderr) when it does not load."""
    module, _, attr = value.partition(":")
    try:
        register: Register = getattr(importlib.import_module(module.strip()), attr.split("[")[0].strip() or "register")
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"warning: {COMMAND_GROUP} entry point {name} = {value!r} does not load ({exc}); "
                         "reinstall or remove the package that declares it\n")
        return None
    return register
