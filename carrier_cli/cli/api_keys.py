"""`carrier api-keys create|list|revoke`: the keys `carrier serve` accepts (logic in
carrier_cli.auth; this module parses the arguments and prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from carrier_cli.auth.keys import KeyInfo

app = typer.Typer(
    help="Keys for Carrier's HTTP API: create (shown once), list, revoke.",
    no_args_is_help=True,
)

NameArg = Annotated[
    str, typer.Argument(help="A name for the key (letters, digits, '.', '-', '_').")
]


def _database_url() -> str | None:
    from carrier_cli.state import STATE

    return STATE.settings().settings.database_url


def _when(moment: datetime | None, *, never: str = "-") -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else never


@app.command("create")
def create(
    name: NameArg,
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="read (GET only), chat (read + send messages) or admin (all)."
        ),
    ] = "chat",
) -> None:
    """Make a key and print it, once: only a salted hash of it is stored."""
    import asyncio

    from carrier_cli.auth.admin import create_key, curl_line
    from carrier_cli.auth.keys import check_name, parse_scope
    from carrier_cli.output import err

    check_name(name, label="NAME")
    parse_scope(scope, label="--scope")
    raw, info = asyncio.run(create_key(_database_url(), name, scope))
    # The key alone on stdout (KEY=$(carrier api-keys create ci) keeps just it); the
    # rest on stderr, printed as it is: it holds the key, which scrubbing would mask.
    err().print(f"Created API key '{info.name}' (scope {info.scope}):", markup=False)
    typer.echo(raw)
    err().print(
        "Copy it now: it cannot be shown again (only its hash is stored).",
        style="yellow",
        markup=False,
    )
    err().print("Try it (once `carrier serve` runs):", markup=False)
    err().print(curl_line(raw), markup=False, soft_wrap=True)


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The keys: name, scope, prefix, created, last used, revoked (never the key)."""
    import asyncio

    from carrier_cli.auth.admin import key_json, list_keys
    from carrier_cli.output import notice, print_json

    keys = asyncio.run(list_keys(_database_url()))
    if as_json:
        print_json([key_json(k) for k in keys])
    elif not keys:
        notice("No API keys yet: `carrier api-keys create NAME` makes one.")
    else:
        _print_table(keys)


def _print_table(keys: list[KeyInfo]) -> None:
    from rich.text import Text

    from carrier_cli.output import out, table

    grid = table()
    grid.add_column("name", overflow="fold")
    for header in ("scope", "prefix", "created", "last used", "revoked"):
        grid.add_column(header, no_wrap=True)
    for info in keys:
        revoked = Text(_when(info.revoked_at), style="red") if info.revoked_at else Text("-")
        grid.add_row(
            info.name,
            info.scope,
            info.display_prefix,
            _when(info.created_at),
            _when(info.last_used_at, never="never"),
            revoked,
        )
    out().print(grid)


@app.command("revoke")
def revoke(name: NameArg) -> None:
    """Refuse a key from now on, in every process sharing the database."""
    import asyncio

    from carrier_cli.auth.admin import revoke_key
    from carrier_cli.output import notice

    info = asyncio.run(revoke_key(_database_url(), name))
    notice(f"Revoked API key '{info.name}' ({info.display_prefix}, scope {info.scope}).")
