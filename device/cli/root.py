"""The ``spinal`` command line: the root command, its groups, and the commands other packages contribute.

Exit codes everywhere: 0 ok, 1 a check failed, 2 bad input or usage. ``spinal --help`` must stay fast: the
modules imported here import only typer and :mod:`device.cli.common` at their top, and everything heavy (numpy,
rich, bundles, runtimes) inside the command that needs it.

Other packages add commands through the ``spinal.commands`` entry-point group: each entry point names a
``register(app)`` function that adds its commands to the root Typer app. ``spinal convert`` comes that way from
the converter (the ``host`` extra); where it is absent, ``spinal convert`` says how to install it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from device.cli import bench, bundles, record, run, sensors, signing
from device.cli.common import HOST_INSTALL_HINT, reports_errors
from device.errors import MissingDependency

COMMAND_GROUP = "spinal.commands"
# The contributors this distribution declares in pyproject.toml, loaded directly when the installed metadata does
# not list them (a source tree on PYTHONPATH, an editable install made before they were declared). Strings only:
# device/ never imports the converter; it asks for it by name where it is installed.
OWN_CONTRIBUTORS = {"convert": "toolchain.cli:register"}

HELP = "Spinal: quantize and verify models on the workstation, run them next to the sensors."


def _version(value: bool) -> None:
    if value:
        from device import __version__
        from device.cli.common import console

        console.print(f"spinal {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Spinal: quantize and verify models on the workstation, run them next to the sensors."""


def contributors() -> dict[str, str]:
    """The ``spinal.commands`` entry points as {name: "module:function"}, plus this distribution's own
    contributors that the metadata does not list but that are importable here."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=COMMAND_GROUP)}
    for name, value in OWN_CONTRIBUTORS.items():
        module = value.partition(":")[0]
        if name not in found and value not in found.values() and _importable(module):
            found[name] = value
    return found


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False


def _load(name: str, value: str) -> Callable[[typer.Typer], None] | None:
    module, _, attr = value.partition(":")
    try:
        register: Callable[[typer.Typer], None] = getattr(importlib.import_module(module), attr or "register")
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"warning: {COMMAND_GROUP} entry point {name} = {value!r} does not load ({exc}); "
                         "reinstall or remove the package that declares it\n")
        return None
    return register


@reports_errors
def _convert_missing() -> None:
    """Convert a trained model into a bundle (needs the host extra: pip install 'spinal[host]')."""
    raise MissingDependency(f"this command needs the converter stack, which is not installed; install it with: "
                            f"{HOST_INSTALL_HINT}")


def build_app(found: dict[str, str] | None = None) -> typer.Typer:
    """The root app with the device's commands and those of ``found`` (default: :func:`contributors`)."""
    app = typer.Typer(name="spinal", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                      add_completion=False, rich_markup_mode=None)
    app.callback()(_root)
    app.command(name="inspect")(bundles.inspect)
    app.command(name="verify")(bundles.verify)
    app.command(name="run")(run.run)
    app.add_typer(sensors.app, name="sensors")
    app.command(name="bench")(bench.bench)
    app.command(name="record")(record.record)
    app.command(name="keygen")(signing.keygen)
    app.command(name="sign")(signing.sign)
    for name, value in (contributors() if found is None else found).items():
        register = _load(name, value)
        if register is not None:
            register(app)
    if not any(c.name == "convert" for c in app.registered_commands):
        app.command(name="convert", add_help_option=False,
                    context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_convert_missing)
    return app


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="spinal")
