"""What `carrier db` and `carrier memory` do, as library functions the CLI wraps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import CarrierError, InputError
from carrier_cli.memory.backends import backend_class, connect_check, make_engine, open_backend
from carrier_cli.memory.migrate import drop_everything, schema_state, upgrade
from carrier_cli.memory.urls import mask_url, normalise_url

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
        "backend": backend_class(full).name,
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
    return {"backend": backend_class(full).name, "url": mask_url(full), "revision": after.revision}


async def database_status(url: str | None, embedder: Embedder | None = None) -> dict[str, Any]:
    """Backend, masked URL, revision vs head, rows per table, embedding model/dimension."""
    from carrier_cli.memory.store import MemoryStore

    full = normalise_url(url)
    info: dict[str, Any] = {"backend": backend_class(full).name, "url": mask_url(full)}
    if embedder is not None:
        info["embedder"] = embedder.model_id
        info["embedder_dimension"] = embedder.dimension
    if backend_class(full).missing(full):
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
        store = MemoryStore(open_backend(full, engine), embedder)
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
    return await connect_check(engine, full)


async def check_database(url: str | None) -> dict[str, Any]:
    """`carrier db check`: is the database sound? Never writes to it. SQLite: the file is
    an SQLite database and `PRAGMA integrity_check` finds nothing (read-only connection),
    the schema is at a known revision, the memories can be counted. PostgreSQL: the schema
    revision, every index valid (`pg_index.indisvalid`: a failed CREATE INDEX
    CONCURRENTLY leaves an invalid one), and a count of the memories (reads every heap
    page, so a damaged page shows). `ok` is the verdict; `checks` say what was looked at."""
    full = normalise_url(url)
    backend = backend_class(full)
    info: dict[str, Any] = {"backend": backend.name, "url": mask_url(full)}
    checks = await backend.check_database(full)
    info["checks"] = checks
    info["ok"] = all(c["ok"] for c in checks)
    return info
