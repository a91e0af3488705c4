"""The `carrier` group with its commands built on first use.

Typer builds a click command for every registered command and group before it parses
anything: for `carrier chat` that was all 58 commands of 17 modules (their imports, their
signatures read, their parameters converted), ~45 ms idle and ~120 ms on a loaded machine,
of which chat needs one. Here each top-level name maps to the module that defines it, and a
command is built from the module (exactly as `add_typer`/`register` built it) only when
click asks for it by name: `carrier chat` builds `chat`; completion and the "did you mean"
suggestion list names from the table. `carrier --help` lists each command with the first
paragraph of its help from a second table (`summaries`), not by building all 16 (~77 ms of
its ~140 ms in-process, cProfile here, at load 2); tests/cli/test_app.py checks
that the listing is the one the built commands give, so the table cannot drift.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from gettext import gettext as _
from typing import Any, Literal

import typer
from typer._click import Command
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import TyperInfo

# `app`: the module's Typer group, added under the name; `register`: the module's
# `register(app)` adds the one command of that name.
Kind = Literal["app", "register"]


class LazyCommands(MutableMapping[str, Command]):
    """Command name -> click command, each built on its first lookup, in table order."""

    def __init__(self, builders: dict[str, Callable[[], Command]]) -> None:
        self._builders = builders
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            builder = self._builders[name]  # KeyError: no such command
            self._built[name] = builder()
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command
        self._builders.setdefault(name, lambda: command)

    def __delitem__(self, name: str) -> None:
        del self._builders[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def is_built(self, name: str) -> bool:
        return name in self._built


def lazy_group(
    owner: Callable[[], typer.Typer],
    table: list[tuple[str, str, Kind]],
    summaries: dict[str, str] | None = None,
) -> type[TyperGroup]:
    """A TyperGroup class for `typer.Typer(cls=...)` whose commands are `table`'s:
    (name, module, kind), built with the settings of `owner()` (the Typer app this class
    is given to) the way Typer builds them. `summaries`: name -> the first paragraph of
    the command's help, what the group's help lists for a command not built yet."""
    listed = dict(summaries or {})

    def build(name: str, module_name: str, kind: Kind) -> Command:
        app = owner()
        module: Any = importlib.import_module(module_name)
        if kind == "app":
            return get_group_from_info(
                TyperInfo(module.app, name=name),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
                suggest_commands=app.suggest_commands,
            )
        scratch = typer.Typer()
        module.register(scratch)
        (info,) = [c for c in scratch.registered_commands if c.name == name]
        return get_command_from_info(
            info,
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )

    def builder(name: str, module_name: str, kind: Kind) -> Callable[[], Command]:
        return lambda: build(name, module_name, kind)

    class CarrierGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            lazy = LazyCommands({name: builder(name, mod, kind) for name, mod, kind in table})
            for name, command in self.commands.items():  # any registered on `app` itself
                lazy[name] = command
            self.commands = lazy

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)  # names only: TyperGroup's builds every command

        def _short_help(self, ctx: Any, name: str, limit: int) -> str | None:
            """The command's line in the listing (None: hidden or unknown). A command not
            built yet whose summary is known gets click's shortening of that summary,
            which is what the built command gives (click shortens the first paragraph)."""
            lazy = self.commands
            if name in listed and isinstance(lazy, LazyCommands) and not lazy.is_built(name):
                return make_default_short_help(listed[name], limit)
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                return None
            return command.get_short_help_str(limit)

        def format_commands(self, ctx: Any, formatter: Any) -> None:
            """TyperGroup's listing (typer/core.py), its lines from `_short_help`."""
            names = self.list_commands(ctx)
            if not names:
                return
            limit = formatter.width - 6 - max(map(len, names))
            rows = [(name, self._short_help(ctx, name, limit)) for name in names]
            shown = [(name, line) for name, line in rows if line is not None]
            if shown:
                with formatter.section(_("Commands")):
                    formatter.write_dl(shown)

    return CarrierGroup
