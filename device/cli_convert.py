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
    """``--input-shape NAME=1,3,64`` (or ``NAME:1,3,64``, or bare dims for a one-input model; repeatable)
    → {name or "": shape}: the same parser ``verify`` and ``bench`` use."""
    from device.runtime.checks import parse_input_shapes

    return parse_input_shapes(values)


def parse_preprocess(values: list[str] | None, file: Any = None) -> tuple[dict[str, Any], ...]:
    """``--preprocess "highpass:cutoff_hz=0.3"`` (repeatable, in order) or ``--preprocess-file chain.toml``
    (``[[preprocess]]`` tables: ``block = "highpass"``, ``cutoff_hz = 0.3``) as the manifest's block objects."""
    from device.dsp import ChainError, parse_block, parse_block_text

    if values and file is not None:
        raise BadInput("give the chain with --preprocess or --preprocess-file, not both")
    if file is not None:
        import tomllib

        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BadInput(f"--preprocess-file {file}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"--preprocess-file {file}: invalid TOML: {exc}") from None
        items = data.get("preprocess")
        unknown = sorted(set(data) - {"preprocess"})
        if unknown or not isinstance(items, list):
            raise BadInput(f"--preprocess-file {file}: expected [[preprocess]] tables (block = \"highpass\", ...)"
                           + (f"; unknown key {unknown[0]!r}" if unknown else ""))
        blocks = []
        for i, item in enumerate(items):
            try:
                parse_block(item)
            except ChainError as exc:
                raise BadInput(f"--preprocess-file {file}: {exc.where(f'preprocess[{i}]')}") from None
            blocks.append(dict(item))
        return tuple(blocks)
    out = []
    for i, text in enumerate(values or []):
        try:
            obj = parse_block_text(text)
            parse_block(obj)
        except ChainError as exc:
            raise BadInput(f"--preprocess {text!r}: {exc.where(f'block {i + 1}').split(': ', 1)[-1]}") from None
        out.append(obj)
    return tuple(out)


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

