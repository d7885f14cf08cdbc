"""What every command group of the ``spinal`` CLI shares: error reporting and output.

Libraries raise :class:`device.errors.SpinalError`; :func:`reports_errors` turns it into one
line on stderr and the error's exit code (0 ok, 1 a check failed, 2 bad input or usage).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer

from device.errors import MissingDependency, SpinalError, report_line

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")



class RuntimeChoice(StrEnum):
    """``--runtime`` of verify and bench: ``all`` (every runtime installed here) or one of ``RUNTIMES``
    (device/runtime/base.py; tests/test_cli_commands.py checks that the two agree)."""

    all = "all"
    litert = "litert"
    tflite_runtime = "tflite-runtime"
    onnxruntime = "onnxruntime"


PathArg = Annotated[Path, typer.Argument(help="A bundle (directory or .spinal archive), or a .onnx/.tflite file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


class _LazyConsole:
    """A rich ``Console`` made on first use, so that ``spinal --help`` never imports rich."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (for rich objects that take one: ``Live``, ``Progress``)."""
        if self._console is None:
            from rich.console import Console

            # No emoji codes: ":boom:" in a user's module name must print as written.
            self._console = Console(stderr=self._stderr, highlight=False, emoji=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


_stdout = _LazyConsole(stderr=False)
_stderr = _LazyConsole(stderr=True)
console = cast("Console", _stdout)
err_console = cast("Console", _stderr)


def rich_console(stderr: bool = False) -> Console:
    """The rich ``Console`` behind :data:`console` (or :data:`err_console`), made now if it was not yet."""
    return (_stderr if stderr else _stdout).get()

HOST_INSTALL_HINT = "pip install 'spinal[host]'"


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)
    return typer.Exit(code)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so that project errors end it with one line and their exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SpinalError, OSError) as exc:  # OSError: no such file, disk full...: the environment, not a bug
            message, code = report_line(exc) or (str(exc), 2)
            raise fail(_escape(message), code) from None

    return wrapper


def require_host() -> None:
    """Raise :class:`MissingDependency` unless the converter stack (``host`` extra) is importable."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"this command needs the converter stack ({', '.join(missing)} not "
                                f"installed); install it with: {HOST_INSTALL_HINT}")


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (plain print: no rich markup or wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
