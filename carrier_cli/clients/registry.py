"""Which clients `carrier run --client NAME` can start: the `carrier.clients` entry points.

A client is a coroutine function `async def client(runtime, settings, stop_event) -> None`
(see `clients.supervisor`), named by an entry point in the `carrier.clients` group. A
third-party package adds `carrier run --client telegram` by declaring, in its own
pyproject.toml,

    [project.entry-points."carrier.clients"]
    telegram = "carrier_telegram:run_telegram_client"

Carrier declares its own clients there too. `BUILTIN_CLIENTS` repeats them so they work
even where the installed metadata predates the group (an editable install made before it
was added, a source checkout on PYTHONPATH); a test keeps the two in step. Built-ins come
first and keep their names. Nothing here imports a client: the supervisor does that when
one is chosen, so `carrier --help` never imports discord.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "carrier.clients"

# Client name -> "module:coroutine function", in the order `--help` lists them.
BUILTIN_CLIENTS: dict[str, str] = {
    "discord": "carrier_cli.clients.discord:run_discord_client",
    "instagram": "carrier_cli.clients.instagram.autopost:run_instagram_client",
}


def installed_entry_points() -> Iterable[EntryPoint]:
    """Entry points of the `carrier.clients` group in the installed distributions."""
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def available_clients(
    loader: Callable[[], Iterable[EntryPoint]] = installed_entry_points,
) -> dict[str, str]:
    """Client name -> "module:function": Carrier's own first, then installed entry points
    (a name already taken keeps its first target, as plugin action names do)."""
    registry = dict(BUILTIN_CLIENTS)
    for ep in loader():
        # module + attr, without any `[extras]` the value may carry
        registry.setdefault(ep.name, f"{ep.module}:{ep.attr}" if ep.attr else ep.module)
    return registry
