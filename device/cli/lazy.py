"""A root command group whose sub-commands are built when they run, not when ``spinal --help`` lists them.

Typer turns every registered function into a click command (signature, type hints, one click parameter per
option) before it parses the command line: for ``spinal --help`` that was a third of its instructions. Here the
commands stay registered on a *source* Typer app; the root group builds a command's click object from it on first
use (:class:`LazyCommands`), and its help lists each command with the first line of its docstring, without
building any. It also reports an option's bad value (a closed choice, a number that is not one) in one line, as
the commands report every other error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


@dataclass
class _Entry:
    describe: Callable[[], str]  # the help text (a contributed command's module is imported only when asked)
    build: Callable[[], Any]


def _entries(source: typer.Typer) -> dict[str, _Entry]:
    """Name → help and builder of each command and group registered on ``source``, in Typer's order."""
    out: dict[str, _Entry] = {}
    for command in source.registered_commands:
        assert command.callback is not None, "a registered command has a callback"
        name = command.name or typer.main.get_command_name(command.callback.__name__)
        text = command.help or inspect.getdoc(command.callback) or ""
        out[name] = _Entry(_text(inspect.cleandoc(text)), _command_builder(source, command, name))
    for group in source.registered_groups:
        sub = group.typer_instance
        assert sub is not None, "add_typer registers a Typer app"
        group_name = group.name or sub.info.name
        assert isinstance(group_name, str), "a group added to spinal has a name"
        out[group_name] = _Entry(_text(inspect.cleandoc(str(group.help or sub.info.help or ""))),
                                 _group_builder(sub, group_name))
    return out


def _text(text: str) -> Callable[[], str]:
    return lambda: text


def _contributed(name: str, load: Callable[[], typer.Typer]) -> _Entry:
    """The entry of command ``name`` that another package contributes: ``load`` imports it and returns a Typer app
    holding it, once, when the command runs or ``spinal --help`` lists it (``spinal run`` never imports it)."""
    cache: dict[str, _Entry] = {}

    def entry() -> _Entry:
        if not cache:
            cache["entry"] = _entries(load())[name]
        return cache["entry"]

    return _Entry(lambda: entry().describe(), lambda: entry().build())


def _command_builder(source: typer.Typer, command: Any, name: str) -> Callable[[], Any]:
    def build() -> Any:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=source.pretty_exceptions_enable,
                             rich_markup_mode=source.rich_markup_mode)
        single.registered_commands.append(command)
        built = typer.main.get_command(single)
        built.name = name
        return built

    return build


def _group_builder(sub: typer.Typer, name: str) -> Callable[[], Any]:
    def build() -> Any:
        built = typer.main.get_command(sub)
        built.name = name
        return built

    return build


class LazyCommands(MutableMapping[str, Any]):
    """The root group's ``commands``: every name is there; a command is built the first time it is looked up."""

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self.entries = entries
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self.entries[name].build()
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command
        self.entries.setdefault(name, _Entry(_text(command.help or ""), lambda: command))

    def __delitem__(self, name: str) -> None:
        del self.entries[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class BadValue(typer.BadParameter):
    """An option's bad value, shown as one ``error:`` line (click prints usage, a hint and the error)."""

    def format_message(self) -> str:
        return self.message

    def show(self, file: Any = None) -> None:
        from rich.markup import escape

        from device.cli.common import fail

        fail(escape(self.message), self.exit_code)


class LazyGroup(TyperGroup):
    """The root group: its sub-commands come from :attr:`source` and :attr:`contributed` (see :func:`lazy_group`)."""

    source: ClassVar[typer.Typer]
    contributed: ClassVar[dict[str, Callable[[], typer.Typer]]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        entries = _entries(self.source)
        entries.update({name: _contributed(name, load) for name, load in self.contributed.items()})
        self.commands = LazyCommands(entries)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            if isinstance(exc, BadValue):
                raise
            raise BadValue(exc.format_message()) from None

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Click's listing (name and short help a row), from the docstrings instead of the built commands."""
        commands = self.commands
        assert isinstance(commands, LazyCommands)
        if not commands.entries:
            return
        limit = formatter.width - 6 - max(len(name) for name in commands.entries)
        rows = [(name, TyperCommand(name=name, help=entry.describe()).get_short_help_str(limit))
                for name, entry in commands.entries.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def lazy_group(source: typer.Typer,
               contributed: dict[str, Callable[[], typer.Typer]] | None = None) -> type[LazyGroup]:
    """A :class:`LazyGroup` class serving ``source``'s commands, and each command of ``contributed`` (name → a
    function returning a Typer app that holds it, called on first use) (pass it as ``typer.Typer(cls=...)``)."""
    return type("SpinalGroup", (LazyGroup,), {"source": source, "contributed": dict(contributed or {})})
