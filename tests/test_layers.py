"""The habits of `make lint` hold: the import-layer contracts and the type checker (pyproject.toml).

The contracts are checked on the tree as it is, and on a copy of it with one forbidden import per rule
added, so that a contract that checks nothing (a misspelt layer, a lost option) fails here too. The
tools come with the ``dev`` extra; where they are missing (the device-only venv) the tests skip.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(module: str, script: str) -> Path:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (the dev extra has it)")
    path = BIN / script
    if not path.exists():
        found = shutil.which(script)
        if found is None:
            pytest.skip(f"{script} is not on PATH")
        path = Path(found)
    return path


def test_import_contracts_hold() -> None:
    proc = subprocess.run([_tool("importlinter", "lint-imports")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


# (file added to the copy, its one line, what lint-imports must say)
PROBES = [
    ("device/sensors/_probe.py", "import device.runtime.base",
     "device.sensors is not allowed to import device.runtime"),
    ("device/sinks/_probe.py", "import device.sensors.base", "device.sinks is not allowed to import device.sensors"),
    ("device/runtime/_probe.py", "import device.daemon", "device.runtime is not allowed to import device.daemon"),
    ("device/_probe.py", "import toolchain.report", "device is not allowed to import toolchain"),
    ("device/_probe2.py", "import torch", "device is not allowed to import torch"),
    ("device/runtime/_probe2.py", "import device.runtime._probe3", "No cycles are allowed in device.runtime"),
    ("device/runtime/_probe3.py", "import device.runtime._probe2", "No cycles are allowed in device.runtime"),
]


def test_import_contracts_catch_each_kind_of_violation(tmp_path: Path) -> None:
    lint_imports = _tool("importlinter", "lint-imports")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("device", "toolchain"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, line, _ in PROBES:
        (tmp_path / path).write_text(line + "  # noqa: F401\n")
    proc = subprocess.run([lint_imports, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout
    missed = [message for _, _, message in PROBES if message not in proc.stdout]
    assert missed == [], proc.stdout


@pytest.mark.slow  # seconds with mypy's cache (.mypy_cache, shared with `make lint`), ~30 s without
def test_type_checker_passes() -> None:
    proc = subprocess.run([_tool("mypy", "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_type_checker_exemptions_name_existing_modules_and_only_error_codes() -> None:
    """The list of modules not yet strict-clean only shrinks: each entry names a module that exists, and
    names the error codes it may still have (never ``ignore_errors``, never a strictness flag off)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert set(config["files"]) == {"device", "toolchain"}
    for override in config.get("overrides", []):
        modules = override["module"]
        modules = [modules] if isinstance(modules, str) else modules
        ours = [m for m in modules if m.split(".")[0] in ("device", "toolchain")]
        if not ours or override.get("disallow_untyped_defs") is False:  # third-party, or toolchain's defaults
            continue
        assert "ignore_errors" not in override, override
        assert set(override) == {"module", "disable_error_code"}, override
        for module in ours:
            path = ROOT / module.replace(".", "/")
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), \
                f"pyproject.toml [[tool.mypy.overrides]] names {module}, which no longer exists: delete the entry"
