"""How ``spinal`` finds its commands: the ``spinal.commands`` entry points, the converter found by import when the
installed metadata does not list it, the install hint when it is absent; and ``--help`` without the heavy modules."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device.cli import plugins, root
from device.cli.common import HOST_INSTALL_HINT
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

PLUGIN = '''
import typer

def register(app: typer.Typer) -> None:
    @app.command(name="hello")
    def hello(name: str = "world") -> None:
        """Say hello."""
        print(f"hello {name}")
'''


def _dist(site, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.mark.parametrize("group", ["console_scripts", "pytest11", plugins.COMMAND_GROUP])
def test_entry_points_agree_with_importlib_metadata(group):
    """The light reader finds what importlib.metadata finds in this environment."""
    expected: dict[str, str] = {}
    for point in importlib.metadata.entry_points(group=group):
        expected.setdefault(point.name, point.value)
    assert plugins.entry_points(group) == expected


def test_entry_points_first_distribution_wins_and_other_groups_are_ignored(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _dist(first, "spinal_extra", "[spinal.commands]\n# a comment\nhello = one.cli:register\n"
                                 "[console_scripts]\nx = one:main\n")
    _dist(second, "spinal_extra", "[spinal.commands]\nhello = two.cli:register\n")
    _dist(second, "other", "[spinal.commands]\nbye = other.cli:register\n")
    path = [str(first), str(second), str(tmp_path / "missing")]
    assert plugins.entry_points(plugins.COMMAND_GROUP, path) == {"hello": "one.cli:register",
                                                                 "bye": "other.cli:register"}
    meta = {p.name: p.value for p in importlib.metadata.distributions(path=path)
            for p in p.entry_points if p.group == plugins.COMMAND_GROUP}
    assert set(meta) == {"hello", "bye"}


def _invoke(app, *args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_an_entry_point_adds_its_command(tmp_path, monkeypatch):
    (tmp_path / "spinal_hello_plugin.py").write_text(PLUGIN)
    _dist(tmp_path, "spinal_hello", "[spinal.commands]\nhello = spinal_hello_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = plugins.contributors()
    assert found["hello"] == "spinal_hello_plugin:register"
    assert found["convert"] == "toolchain.cli:register"
    app = root.build_app(found)
    result = _invoke(app, "hello", "--name", "pi")
    assert result.exit_code == 0 and result.stdout == "hello pi\n"
    assert "hello" in _invoke(app, "--help").stdout


def test_the_converter_is_found_by_import_when_the_metadata_does_not_list_it(monkeypatch):
    """An editable install made before the entry point was declared, or a source tree on PYTHONPATH."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: {})
    assert plugins.contributors() == {"convert": "toolchain.cli:register"}
    result = _invoke(root.build_app(), "convert", "--help")
    assert result.exit_code == 0 and "--calibration-method" in result.stdout


def test_the_converter_entry_point_is_loaded_once(monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: {"convert": "toolchain.cli:register"})
    assert plugins.contributors() == {"convert": "toolchain.cli:register"}
    listing = _invoke(root.build_app(), "--help").stdout
    assert [line.split()[0] for line in listing.splitlines() if line.startswith("  ")].count("convert") == 1


def test_without_the_converter_convert_says_how_to_install_it(tmp_path):
    result = _invoke(root.build_app({}), "convert", DATA / "tiny.onnx", "-o", tmp_path / "out", "--formats", "x")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: this command needs the converter stack, which is not installed; install it with: {HOST_INSTALL_HINT}"
    ]
    assert not (tmp_path / "out").exists()


def test_a_broken_entry_point_is_named_when_used_and_the_rest_works(monkeypatch, capsys):
    app = root.build_app({"broken": "no_such_spinal_plugin:register"})
    assert capsys.readouterr().err == "", "a contributed command is imported only when it is used"
    assert _invoke(app, "--version").exit_code == 0
    result = _invoke(app, "broken")
    assert result.exit_code == 2
    assert "entry point broken = 'no_such_spinal_plugin:register' does not load" in result.output
    assert result.output.splitlines()[-1].startswith("error: the command 'broken'")


def test_the_daemon_command_does_not_import_the_converter():
    """`spinal run` (and every device command) leaves a contributed command's package unimported."""
    script = ("import sys; sys.argv = ['spinal', 'run', '--check', '--sim', '-c', 'firmware/demo.toml']\n"
              "from device.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'toolchain'))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]


def test_help_imports_none_of_the_heavy_modules():
    """`spinal --help` lists every command without importing numpy, rich, the bundle or a runtime."""
    script = ("import sys; sys.argv = ['spinal', '--help']\n"
              "from device.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "heavy = ('numpy', 'rich', 'device.bundle', 'device.modelfile', 'device.runtime', 'importlib.metadata')\n"
              "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          check=True)
    assert "convert" in proc.stdout and "sensors" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "device.cli", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env=ENV)
    assert proc.returncode == 0 and proc.stdout.startswith("spinal ")


def test_closed_choices_agree_with_their_registries():
    from device.cli.common import RuntimeChoice
    from device.manifest import TASK_KINDS
    from device.runtime.base import RUNTIMES
    from toolchain.cli import Task

    assert [c.value for c in RuntimeChoice] == ["all", *RUNTIMES]
    assert tuple(t.value for t in Task) == TASK_KINDS


def test_a_bad_choice_is_one_line_naming_the_option(tmp_path):
    result = _invoke(root.build_app(), "sensors", "read", "bme280", "--rate", "fast")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--rate' / '-r': "), lines
    result = _invoke(root.build_app(), "bench", tmp_path, "--runtime", "tensorrt")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: Invalid value for '--runtime': ")
    assert "'tensorrt' is not one of 'all', 'litert', 'tflite-runtime', 'onnxruntime'" in lines[0]
