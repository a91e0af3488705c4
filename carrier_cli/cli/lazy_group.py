"""The `carrier` group with its commands built on first use.

Typer builds a click command for every registered command and group before it parses
anything: for `carrier chat` that was all 58 commands of 17 modules (their imports, their
signatures read, their parameters converted), ~45 ms idle and ~120 ms on a loaded machine,
of which chat needs one. Here each top-level name maps to the module that defines it, and a
command is built from the module (exactly as `add_typer`/`register` built it) only when
click asks for it by name: `carrier chat` builds `chat`; `carrier --help`, completion and
the "did you mean" suggestion list names from the table, and help builds them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Literal

import typer
from typer._click import Command
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


def lazy_group(
    owner: Callable[[], typer.Typer], table: list[tuple[str, str, Kind]]
) -> type[TyperGroup]:
    """A TyperGroup class for `typer.Typer(cls=...)` whose commands are `table`'s:
    (name, module, kind), built with the settings of `owner()` (the Typer app this class
    is given to) the way Typer builds them."""

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

    return CarrierGroup
