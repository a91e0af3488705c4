"""`carrier db init|upgrade|status|check|reset`: the memory database's schema and health."""

from __future__ import annotations

from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Create, upgrade, inspect or reset the memory database (SQLite by default, "
    "PostgreSQL + pgvector with DATABASE_URL).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Database URL (overrides DATABASE_URL / config)."),
]


def _settings(database_url: str | None) -> Any:
    from carrier_cli.state import STATE

    return STATE.settings(database_url=database_url).settings


def _migrate(database_url: str | None, as_json: bool, verb: str) -> None:
    import asyncio

    from carrier_cli.memory.admin import init_database
    from carrier_cli.output import out, print_json

    result = asyncio.run(init_database(_settings(database_url).database_url))
    if as_json:
        print_json(result)
        return
    if result["changed"]:
        start = result["before"] or "empty"
        out().print(
            f"{verb} {result['backend']} database {result['url']}: "
            f"{start} -> {result['revision']}.",
            markup=False,
        )
    else:
        out().print(
            f"The {result['backend']} database {result['url']} is already at "
            f"{result['revision']} (current).",
            markup=False,
        )


@app.command("init")
def init(database_url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Create the schema (or upgrade it to the newest). On PostgreSQL, also
    CREATE EXTENSION vector. Not required for SQLite: any memory command creates it."""
    _migrate(database_url, as_json, "Initialised")


@app.command("upgrade")
def upgrade(database_url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Migrate an existing database to this Carrier's schema (back it up first)."""
    _migrate(database_url, as_json, "Upgraded")


@app.command("status")
def status(database_url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Backend, URL (password masked), schema revision, rows per table, embedding model."""
    import asyncio

    from carrier_cli.llm.embeddings import create_embedder
    from carrier_cli.memory.admin import database_status
    from carrier_cli.output import out, print_json

    settings = _settings(database_url)
    try:
        embedder = create_embedder(settings)
    except Exception:
        embedder = None
    info = asyncio.run(database_status(settings.database_url, embedder))
    if as_json:
        print_json(info)
        return
    from carrier_cli.output import key_value_table

    revision = info.get("revision") or "none"
    current = "current" if info.get("current") else info.get("status", "")
    rows = [
        ("backend", info["backend"]),
        ("url", info["url"]),
        ("schema", f"{revision} ({current})"),
        ("embedding model", str(info.get("embedding_model") or "none stored yet")),
        ("dimension", str(info.get("embedding_dimension") or "-")),
        ("configured embedder", str(info.get("embedder", "-"))),
    ]
    for name, index in (info.get("vector_indexes") or {}).items():
        state = "HNSW" if index["indexed"] else "no index yet: searched exactly"
        rows.append((f"vectors: {name} index", f"{index['vectors']} ({state})"))
    for name, count in (info.get("tables") or {}).items():
        rows.append((f"rows: {name}", str(count)))
    out().print(key_value_table(rows))
    if info.get("hint"):
        out().print(info["hint"], markup=False)


@app.command("check")
def check(database_url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Check the database is sound, without changing it: SQLite's PRAGMA integrity_check,
    or PostgreSQL's index validity and a read of every memory; and the schema revision.
    Exit 0 when every check passes, 1 when one fails."""
    import asyncio

    from carrier_cli.memory.admin import check_database
    from carrier_cli.output import out, print_json

    result = asyncio.run(check_database(_settings(database_url).database_url))
    if as_json:
        print_json(result)
    else:
        for item in result["checks"]:
            mark = "ok    " if item["ok"] else "FAILED"
            out().print(f"{mark} {item['name']}: {item['detail']}", markup=False)
        verdict = "is sound" if result["ok"] else "has problems (see FAILED above)"
        out().print(f"The {result['backend']} database {result['url']} {verdict}.", markup=False)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("reset")
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking.")] = False,
    database_url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete every memory, room and entity and recreate an empty schema."""
    import asyncio
    import sys

    from carrier_cli.errors import InputError
    from carrier_cli.memory.admin import reset_database
    from carrier_cli.memory.urls import mask_url, normalise_url
    from carrier_cli.output import out, print_json

    settings = _settings(database_url)
    shown = mask_url(normalise_url(settings.database_url))
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(
                f"`carrier db reset` would delete everything in {shown}.",
                hint="Pass --yes to confirm.",
            )
        typer.confirm(f"Delete everything in {shown}?", abort=True)
    result = asyncio.run(reset_database(settings.database_url))
    if as_json:
        print_json(result)
    else:
        out().print(f"Reset {result['url']}: empty schema at {result['revision']}.", markup=False)
