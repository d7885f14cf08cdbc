"""The ``spinal`` command line: the root command, its groups, and the commands other packages contribute.

Exit codes everywhere: 0 ok, 1 a check failed, 2 bad input or usage. ``spinal --help`` must stay fast: the
modules imported here import only typer and :mod:`device.cli.common` at their top, and everything heavy (numpy,
rich, bundles, runtimes) inside the command that needs it.

Other packages add commands through the ``spinal.commands`` entry points (:mod:`device.cli.plugins`).
``spinal convert`` comes that way from the converter; where it is absent, ``spinal convert`` says how to install
it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from device.cli import bench, bundles, plugins, record, run, sensors, signing
from device.cli.common import HOST_INSTALL_HINT, reports_errors
from device.cli.lazy import lazy_group
from device.errors import MissingDependency

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


@reports_errors
def _convert_missing() -> None:
    """Convert a trained model into a bundle (needs the host extra: pip install 'spinal[host]')."""
    raise MissingDependency(f"this command needs the converter stack, which is not installed; install it with: "
                            f"{HOST_INSTALL_HINT}")


def build_app(found: dict[str, str] | None = None) -> typer.Typer:
    """The root app: the device's commands and those of ``found`` (default: :func:`plugins.contributors`; an
    entry point's name is the command's), each built when it runs (:mod:`device.cli.lazy`). A contributed
    command's package is imported only when that command runs or ``spinal --help`` lists it."""
    source = typer.Typer(rich_markup_mode=None, add_completion=False)
    source.command(name="inspect")(bundles.inspect)
    source.command(name="verify")(bundles.verify)
    source.command(name="run")(run.run)
    source.add_typer(sensors.app, name="sensors")
    source.command(name="bench")(bench.bench)
    source.command(name="record")(record.record)
    source.command(name="keygen")(signing.keygen)
    source.command(name="sign")(signing.sign)
    contributed = {name: _loader(name, value)
                   for name, value in (plugins.contributors() if found is None else found).items()}
    if "convert" not in contributed:
        source.command(name="convert", add_help_option=False,
                       context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_convert_missing)
    app = typer.Typer(cls=lazy_group(source, contributed), name="spinal", help=HELP, no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
    app.callback()(_root)
    return app


def _loader(name: str, value: str) -> Callable[[], typer.Typer]:
    """Import the entry point ``value`` and return a Typer app holding what it registers; where it does not load
    (or registers no command ``name``), ``spinal convert`` says how to install the converter, another command
    that it could not be loaded."""

    def load() -> typer.Typer:
        holder = typer.Typer(rich_markup_mode=None, add_completion=False)
        register = plugins.load(name, value)
        if register is not None:
            register(holder)
        if not any(c.name == name for c in holder.registered_commands) and \
                not any(g.name == name for g in holder.registered_groups):
            missing = _convert_missing if name == "convert" else _unloadable(name, value)
            holder.command(name=name, add_help_option=False,
                           context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(missing)
        return holder

    return load


def _unloadable(name: str, value: str) -> Callable[[], None]:
    @reports_errors
    def unloadable() -> None:
        """(could not be loaded; see the warning)"""
        raise MissingDependency(f"the command {name!r} ({plugins.COMMAND_GROUP} entry point {value!r}) could not be "
                                "loaded; reinstall or remove the package that declares it")

    return unloadable


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="spinal")
