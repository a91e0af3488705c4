"""`MemoryBackend`: what MemoryStore needs from a database.

MemoryStore (store.py) owns what every database shares: embedding, the model/dimension
check, dedupe, mapping memories to rows, caching. A backend owns its connections and
everything that differs between databases: rows in and out, vector search, bulk loads,
locks, and the schema state. Two implement it, both over `sql.SqlBackend`:
`sqlite.backend.SqliteBackend` and `postgres.backend.PostgresBackend`; `backends.py`
picks one from the URL (the only place that looks at it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy import Connection

    from carrier_cli.memory.async_engine import AsyncEngine
    from carrier_cli.memory.calls import GroupBy
    from carrier_cli.memory.failures import StorageFailure
    from carrier_cli.memory.rows import IndexFilters, InsertExtra
    from carrier_cli.memory.sql import StoredModel
    from carrier_cli.memory.types import Entity, Memory, Room, SearchHit
    from carrier_cli.usage.records import CallRecord, UsageTotals

T = TypeVar("T")


class MemoryBackend(Protocol):
    """One database. `name` is "sqlite" or "postgresql" (what `carrier db status` shows)."""

    url: str
    engine: AsyncEngine

    @property
    def name(self) -> str: ...

    @property
    def reports_inserted(self) -> bool:
        """Whether insert_memories reports the ids it inserted (add_many then skips the
        existence query before inserting)."""
        ...

    @property
    def sizes_bulk_loads(self) -> bool:
        """Whether bulk_load plans by its `rows` (else callers need not count them)."""
        ...

    @property
    def locks_rooms(self) -> bool:
        """Whether room_lock orders turns across processes (else it is a no-op)."""
        ...

    # -- opening and closing, connections
    async def close(self) -> None: ...
    def storage_failure(self, exc: BaseException, url: str) -> StorageFailure | None:
        """What a driver error (or one wrapping it) means for the operator, or None."""
        ...

    def write(self) -> AbstractAsyncContextManager[Any]: ...
    def read(self) -> AbstractAsyncContextManager[Any]: ...
    async def run_write(self, work: Callable[[Connection], T]) -> T: ...

    # -- agents, rooms, entities, participants, relationships, cache rows
    async def ensure_agent(self, agent_id: uuid.UUID, name: str) -> None: ...
    def entity_work(
        self,
        entity_id: uuid.UUID,
        platform: str,
        external_id: str,
        name: str,
        metadata: dict[str, Any] | None,
    ) -> Callable[[Connection], Entity]: ...
    def room_work(
        self,
        room_id: uuid.UUID,
        agent_id: uuid.UUID,
        source: str,
        external_id: str,
        name: str | None,
    ) -> Callable[[Connection], Room]: ...
    def participant_work(
        self, room_id: uuid.UUID, entity_id: uuid.UUID
    ) -> Callable[[Connection], Any]: ...
    async def get_entity(self, entity_id: uuid.UUID) -> Entity | None: ...
    async def participants(self, room_id: uuid.UUID) -> list[Entity]: ...
    async def get_room(self, room_id: uuid.UUID) -> Room | None: ...
    async def list_rooms(self, agent_id: uuid.UUID, source: str | None) -> list[Room]: ...
    async def add_relationship(
        self,
        rel_id: uuid.UUID,
        agent_id: uuid.UUID,
        entity_a: uuid.UUID,
        entity_b: uuid.UUID,
        kind: str,
        metadata: dict[str, Any] | None,
    ) -> None: ...
    async def relationships(
        self, agent_id: uuid.UUID, entity_id: uuid.UUID
    ) -> list[dict[str, Any]]: ...
    async def insert_ignore(self, target: Any, values: dict[str, Any], keys: list[str]) -> None: ...
    def insert(self, target: Any) -> Any:
        """The dialect's INSERT (with on_conflict_do_nothing / on_conflict_do_update)."""
        ...

    async def cache_get(self, key: str) -> Any | None: ...
    async def cache_set(self, key: str, value: Any, ttl: float | None) -> None: ...
    async def cache_set_many(self, entries: Sequence[tuple[str, Any, float | None]]) -> None: ...
    async def cache_delete(self, key: str) -> None: ...

    # -- schema state
    async def stored_model(self) -> tuple[str, int] | None: ...
    async def stored_models(self) -> dict[str, int]: ...
    async def ping(self) -> None: ...
    async def table_counts(self, tables: Sequence[str]) -> dict[str, int]: ...
    async def vector_indexes(self) -> dict[str, dict[str, Any]] | None: ...
    async def prepare_vectors(self, dim: int, *, force: bool) -> None: ...

    # -- bulk loads (and the locks they take)
    def bulk_load(
        self, rows: int | None, stored: StoredModel
    ) -> AbstractAsyncContextManager[None]: ...
    async def begin_bulk(self) -> None: ...

    # -- a room held for one turn against other processes (memory.postgres.room_locks)
    def room_lock(
        self, room_id: uuid.UUID, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]: ...
    async def clear_vectors(self) -> None: ...
    def vectors_changed(self) -> None: ...

    # -- memories in
    async def insert_memories(
        self,
        memories: Sequence[Memory],
        vectors: Sequence[np.ndarray | None],
        digests: Sequence[str],
        *,
        extra: InsertExtra | None = None,
    ) -> set[uuid.UUID] | None:
        """Insert the memories, with each one's unit vector (or None) and content hash;
        `extra(conn, new_memories)` runs in the same transaction, after the insert (the
        webhooks' outbox rows for the memories it took)."""
        ...

    async def update_vectors(self, changes: list[dict[str, Any]], model: str) -> None: ...
    async def delete(self, ids: Sequence[uuid.UUID]) -> int: ...

    # -- memories out, vector search
    async def search(
        self, vector: np.ndarray, model: str, *, k: int, threshold: float, filters: IndexFilters
    ) -> list[SearchHit]: ...
    async def has_near(
        self, vector: np.ndarray, model: str, filters: IndexFilters, *, threshold: float
    ) -> bool: ...
    async def stored_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...
    async def get_many(
        self, ids: Sequence[uuid.UUID], *, with_vector: bool = False, conn: Any = None
    ) -> dict[uuid.UUID, Memory]: ...
    async def recent(self, room_id: uuid.UUID, n: int, kinds: list[str] | None) -> list[Memory]: ...
    async def list_memories(
        self,
        filters: IndexFilters,
        *,
        limit: int | None,
        offset: int,
        with_vectors: bool,
        oldest_first: bool,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[Memory]: ...
    async def count(self, filters: IndexFilters) -> int: ...
    async def ids_matching(self, digits: str) -> list[Any]: ...
    async def id_page(self, after: uuid.UUID | None, limit: int) -> list[Any]: ...
    async def stats(self, agent_id: uuid.UUID | None) -> dict[str, Any]: ...

    # -- model call records (memory.calls.CallLog)
    async def record_calls(self, records: Sequence[CallRecord]) -> None: ...
    async def list_calls(
        self,
        *,
        character: str | None = None,
        room_id: uuid.UUID | None = None,
        client: str | None = None,
        purpose: str | None = None,
        since: datetime | None = None,
        limit: int | None = 20,
    ) -> list[CallRecord]: ...
    async def get_call(self, id_or_prefix: str) -> CallRecord | None: ...
    async def usage_totals(
        self,
        *,
        by: GroupBy = "character",
        since: datetime | None = None,
        character: str | None = None,
        model: str | None = None,
    ) -> list[tuple[str, UsageTotals]]: ...
    async def prune_calls(self, *, prompts_older_than: datetime) -> int: ...
