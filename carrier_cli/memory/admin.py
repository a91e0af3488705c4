"""What `carrier db` and `carrier memory` do, as library functions the CLI wraps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import CarrierError, InputError
from carrier_cli.memory.engine import make_engine
from carrier_cli.memory.migrate import drop_everything, schema_state, upgrade
from carrier_cli.memory.urls import backend_of, mask_url, normalise_url, sqlite_file

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.llm.base import Embedder
    from carrier_cli.memory.store import MemoryStore


@dataclass
class Agent:
    name: str
    id: uuid.UUID
    embedding_model: str | None = None


def resolve_agent(character: str | None, settings: Settings) -> Agent:
    """`--character NAME|PATH` (default: the `character` setting) to an agent. A name with
    no character file still works (its id is derived from the name), so memories of a
    character whose file is gone stay reachable."""
    from carrier_cli.memory.types import stable_id

    wanted = character or settings.character
    try:
        from carrier_cli.character import resolve_character

        found = resolve_character(wanted)
        return Agent(found.name, found.id, found.model.embedding)
    except CarrierError:
        if "/" in wanted or wanted.endswith((".json", ".yaml", ".yml")):
            raise
        return Agent(wanted, stable_id("character", wanted))


async def open_store(settings: Settings, agent: Agent | None = None) -> MemoryStore:
    from carrier_cli.llm.embeddings import create_embedder
    from carrier_cli.memory.store import MemoryStore

    embedder: Embedder = create_embedder(settings, model=agent.embedding_model if agent else None)
    return await MemoryStore.open(settings.database_url, embedder=embedder)


async def init_database(url: str | None) -> dict[str, Any]:
    """Create or upgrade to head. Returns what happened, for printing."""
    full = normalise_url(url)
    engine = make_engine(full)
    try:
        before = await _state_or_fail(engine, full)
        if before.status == "unknown":
            raise InputError(
                f"The database {mask_url(full)} is at revision {before.revision}, unknown to "
                "this Carrier (written by a newer version?).",
                hint="Upgrade Carrier, or use another database.",
            )
        if before.status != "current":
            await upgrade(engine)
        after = await schema_state(engine)
    finally:
        await engine.dispose()
    return {
        "backend": backend_of(full),
        "url": mask_url(full),
        "before": before.revision,
        "revision": after.revision,
        "changed": before.revision != after.revision,
    }


async def reset_database(url: str | None) -> dict[str, Any]:
    full = normalise_url(url)
    engine = make_engine(full)
    try:
        state = await _state_or_fail(engine, full)
        if state.status not in ("empty",):
            await drop_everything(engine)
        await upgrade(engine)
        after = await schema_state(engine)
    finally:
        await engine.dispose()
    return {"backend": backend_of(full), "url": mask_url(full), "revision": after.revision}


async def database_status(url: str | None, embedder: Embedder | None = None) -> dict[str, Any]:
    """Backend, masked URL, revision vs head, rows per table, embedding model/dimension."""
    from carrier_cli.memory.store import MemoryStore

    full = normalise_url(url)
    info: dict[str, Any] = {"backend": backend_of(full), "url": mask_url(full)}
    if embedder is not None:
        info["embedder"] = embedder.model_id
        info["embedder_dimension"] = embedder.dimension
    path = sqlite_file(full)
    if path is not None and not path.exists():
        info.update(status="not initialised", revision=None, current=False, tables={})
        info["hint"] = "Run `carrier db init` (or any memory command) to create it."
        return info
    engine = make_engine(full)
    try:
        state = await _state_or_fail(engine, full)
        info.update(
            status=state.status,
            revision=state.revision,
            head=",".join(state.heads),
            current=state.status == "current",
        )
        if state.status in ("empty",):
            info["tables"] = {}
            info["hint"] = "Run `carrier db init`."
            return info
        if state.status != "current":
            info["hint"] = "Run `carrier db upgrade`."
        if embedder is None:
            from carrier_cli.llm.embeddings import LocalEmbedder

            embedder = LocalEmbedder()
        store = MemoryStore(engine, full, embedder)
        try:
            info["tables"] = await store.table_counts()
        except Exception:
            info["tables"] = {}
        if state.status == "current":
            stored = await store.stored_model()
            info["embedding_model"] = stored[0] if stored else None
            info["embedding_dimension"] = stored[1] if stored else None
            models = await store.stored_models()
            if len(models) > 1:
                info["embedding_models"] = models
            indexes = await store.vector_indexes()
            if indexes is not None:
                info["vector_indexes"] = indexes
    finally:
        await engine.dispose()
    return info


async def _state_or_fail(engine: Any, full: str) -> Any:
    from carrier_cli.memory.store import _connect_check

    return await _connect_check(engine, full, schema_state)


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


async def check_database(url: str | None) -> dict[str, Any]:
    """`carrier db check`: is the database sound? Never writes to it. SQLite: the file is
    an SQLite database and `PRAGMA integrity_check` finds nothing (read-only connection),
    the schema is at a known revision, the memories can be counted. PostgreSQL: the schema
    revision, every index valid (`pg_index.indisvalid`: a failed CREATE INDEX
    CONCURRENTLY leaves an invalid one), and a count of the memories (reads every heap
    page, so a damaged page shows). `ok` is the verdict; `checks` say what was looked at."""
    full = normalise_url(url)
    info: dict[str, Any] = {"backend": backend_of(full), "url": mask_url(full)}
    path = sqlite_file(full)
    if path is not None:
        checks = await _check_sqlite_file(path)
    elif backend_of(full) == "sqlite":
        checks = [_check("database", True, "in-memory SQLite database: nothing stored to check")]
    else:
        checks = await _check_postgres(full)
    info["checks"] = checks
    info["ok"] = all(c["ok"] for c in checks)
    return info


def _revision_check(revisions: list[str]) -> dict[str, Any]:
    from carrier_cli.memory.migrate import head_revisions, quick_heads

    heads = quick_heads() or head_revisions()
    found = tuple(sorted(revisions))
    if found == heads:
        return _check("schema", True, f"revision {', '.join(found)} (current)")
    if not found:
        return _check("schema", False, "no schema revision recorded: run `carrier db init`")
    return _check(
        "schema",
        False,
        f"revision {', '.join(found)}, this Carrier expects {', '.join(heads)}: "
        "run `carrier db upgrade` (or upgrade Carrier if it is newer)",
    )


async def _check_sqlite_file(path: Any) -> list[dict[str, Any]]:
    import asyncio
    import sqlite3

    if not path.exists():
        return [_check("file", False, f"{path} does not exist (any memory command creates it)")]

    def run() -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = []
        try:
            # Read-only: a check must not change (or "repair") what it inspects. immutable
            # as a fallback for a file on a read-only disk, where WAL cannot make its -shm.
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
                if rows == ["ok"]:
                    checks.append(_check("integrity", True, "PRAGMA integrity_check: ok"))
                else:
                    shown = "; ".join(rows[:5]) + (
                        f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
                    )
                    checks.append(_check("integrity", False, f"PRAGMA integrity_check: {shown}"))
                try:
                    revisions = [
                        str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version")
                    ]
                except sqlite3.OperationalError:
                    revisions = []
                checks.append(_revision_check(revisions))
                if revisions:
                    count = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
                    checks.append(_check("memories", True, f"{count} memories"))
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "not a database" in text:
                detail = f"{path} is not an SQLite database (or its header is damaged)"
            else:
                detail = f"{path} is damaged: {text}"
            checks.append(_check("integrity", False, detail))
        return checks

    return await asyncio.to_thread(run)


async def _check_postgres(full: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    from carrier_cli.memory.failures import StorageFailure

    checks: list[dict[str, Any]] = []
    engine = make_engine(full)
    try:
        state = await _state_or_fail(engine, full)
        checks.append(_revision_check(list(state.current)))
        async with engine.connect() as conn:
            invalid = (
                (
                    await conn.execute(
                        text(
                            "SELECT c.relname FROM pg_index i "
                            "JOIN pg_class c ON c.oid = i.indexrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() "
                            "AND NOT (i.indisvalid AND i.indisready) ORDER BY 1"
                        )
                    )
                )
                .scalars()
                .all()
            )
            if invalid:
                names = ", ".join(invalid)
                checks.append(
                    _check(
                        "indexes",
                        False,
                        f"invalid indexes: {names} (an interrupted CREATE INDEX; "
                        "`REINDEX INDEX <name>` rebuilds one)",
                    )
                )
            else:
                checks.append(_check("indexes", True, "every index is valid"))
            if state.status in ("current", "behind"):
                # pg_column_size of each row: the heap is read, not only an index.
                sql = "SELECT count(*), sum(pg_column_size(m.*)) FROM memories m"
                try:
                    count = (await conn.execute(text(sql))).one()[0]
                    checks.append(_check("memories", True, f"{count} memories (every row read)"))
                except StorageFailure as failure:
                    checks.append(_check("memories", False, failure.message))
    finally:
        await engine.dispose()
    return checks
