"""Option parsing and progress display for ``spinal convert`` (the command itself is in ``device/cli.py``).

Nothing here imports ``toolchain``: the command imports it lazily, after :func:`require_host` has said
how to install the host extra when it is missing.
"""

from __future__ import annotations

from typing import Any

from device.errors import BadInput


def csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()


def float_list(text: str | None, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in csv_list(text))
    except ValueError:
        raise BadInput(f"{option}: expected comma-separated numbers, got {text!r}") from None


def parse_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape 1,3,64``, ``NAME:1,3,64`` or ``NAME=1,3,64`` (repeatable) → {name or "": shape}.

    ``=`` is looked for first (as ``verify`` and ``bench`` take it): names such as ``onnx::Flatten_0`` hold colons.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        if not sep:
            name, _, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise BadInput(f"--input-shape {value!r}: expected e.g. 1,3,64 or NAME:1,3,64") from None
        if not shape or any(d < 1 for d in shape):
            raise BadInput(f"--input-shape {value!r}: dimensions must be positive integers")
        if not name and shapes:
            raise BadInput("--input-shape: with several inputs, name each one (NAME:1,3,64)")
        shapes[name] = shape
    return shapes


class RichProgress:
    """A rich progress bar fed by the pipeline's steps (on stderr, so --json stays clean)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            from device.cli_common import err_console

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                 console=err_console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("converting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def step(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

