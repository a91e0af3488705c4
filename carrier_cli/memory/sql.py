"""`SqlBackend`: what the SQLite and PostgreSQL backends do alike with memories, over
one SQLAlchemy async engine (connections and the other rows: `sqlbase.SqlBase`; the
model call records: `calls.CallLog`). Each backend (memory.sqlite, memory.postgres)
subclasses it with the vector work: search, inserts that feed an index, bulk loads.
The statements here are dialect-neutral; nothing in this module asks which database it
is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, text, update

from carrier_cli.memory.calls import CallLog
from carrier_cli.memory.rows import (
    CHUNK,
    QUICK_ROWS,
    IndexFilters,
    InsertExtra,
    M,
    columns,
    filtered,
    in_,
    room_times,
    to_memory,
)
from carrier_cli.memory.schema import ROOMS, EmbeddingVector
from carrier_cli.memory.types import Memory, SearchHit

StoredModel = Callable[[], Awaitable[tuple[str, int] | None]]


class SqlBackend(CallLog):
    """One database behind MemoryStore (see memory.backend.MemoryBackend). Subclasses set
    `name`, `dims_sql`, `id_text`, `day_sql` and `read_options` and implement `insert`,
    `insert_memories`, `search` and `has_near`."""

    # Whether `insert_memories` reports which ids it inserted (then add_many skips the
    # existence query before inserting).
    reports_inserted: ClassVar[bool] = False
    # Whether bulk_load plans by the number of rows to come (callers may skip counting).
    sizes_bulk_loads: ClassVar[bool] = False
    # Whether turns of one room must also be ordered across processes (room_lock).
    locks_rooms: ClassVar[bool] = False
    dims_sql: ClassVar[str]  # SQL for the dimension of `embedding`
    id_text: ClassVar[str]  # SQL for a memory id as 32 hex digits (id prefix lookups)

    # ------------------------------------------------------------------ schema state
    async def stored_model(self) -> tuple[str, int] | None:
        """(model id, dimension) of some vector in the database, None when there are none."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT embedding_model, {self.dims_sql} FROM memories "
                        "WHERE embedding_model IS NOT NULL AND embedding IS NOT NULL LIMIT 1"
                    )
                )
            ).first()
        return (str(row[0]), int(row[1])) if row is not None else None

    async def stored_models(self) -> dict[str, int]:
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    select(M.c.embedding_model, func.count())
                    .where(M.c.embedding_model.is_not(None))
                    .group_by(M.c.embedding_model)
                )
            ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def table_counts(self, tables: Sequence[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with self.read() as conn:
            for name in tables:
                counts[name] = int(
                    (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar() or 0
                )
        return counts

    async def vector_indexes(self) -> dict[str, dict[str, Any]] | None:
        """The vectors per index and whether each exists; None without such indexes."""
        return None

    async def prepare_vectors(self, dim: int, *, force: bool) -> None:
        """Make the vector column ready for `dim`-dimensional vectors before a write
        (force: the first vectors of an empty database). Nothing to do by default."""

    @asynccontextmanager
    async def bulk_load(self, rows: int | None, stored: StoredModel) -> AsyncIterator[None]:
        """A large load under way (see MemoryStore.bulk_load). Nothing special by default."""
        yield

    def room_lock(
        self, room_id: uuid.UUID, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold the room against other processes' turns; nothing by default (a database
        one process owns, such as SQLite: its room gates are enough)."""
        return nullcontext()

    async def begin_bulk(self) -> None:
        """Say that the bulk load under way has begun writing vectors (reembed's updates,
        which are not inserts). Nothing to do by default."""

    async def clear_vectors(self) -> None:
        """Drop every vector (reembed's first step)."""
        async with self.write() as conn:
            await conn.execute(update(M).values(embedding=None, embedding_model=None))

    def vectors_changed(self) -> None:
        """Vectors were rewritten in place (reembed): forget what is cached about them."""

    # ------------------------------------------------------------------ memories in
    async def insert_memories(
        self,
        memories: Sequence[Memory],
        vectors: Sequence[np.ndarray | None],
        digests: Sequence[str],
        *,
        extra: InsertExtra | None = None,
    ) -> set[uuid.UUID] | None:
        """Insert the memories (ids already stored are skipped), each with its unit
        vector or None and its content hash, and move the rooms' last_active_at; returns
        the ids inserted when `reports_inserted`. `extra(conn, new_memories)` runs in the
        same transaction (the webhooks' outbox)."""
        raise NotImplementedError

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), CHUNK):
            stmt = self.insert(M).on_conflict_do_nothing(index_elements=["id"])
            conn.execute(stmt, rows[start : start + CHUNK])

    def _touch_rooms(self, conn: Connection, memories: Sequence[Memory]) -> None:
        touch = _touch_room()
        for room_id, moment in room_times(memories).items():
            conn.execute(touch, {"room": room_id, "moment": moment})

    async def update_vectors(self, changes: list[dict[str, Any]], model: str) -> None:
        """Set `embedding` (changes: {"mid": id, "vec": vector}) and the model."""
        change = (
            update(M)
            .where(M.c.id == bindparam("mid"))
            .values(embedding=bindparam("vec", type_=EmbeddingVector()), embedding_model=model)
        )
        async with self.write() as conn:
            await conn.execute(change, changes)

    async def delete(self, ids: Sequence[uuid.UUID]) -> int:
        deleted = 0
        async with self.write() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                result = await conn.execute(delete(M).where(M.c.id.in_(chunk)))
                deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return deleted

    # ------------------------------------------------------------------ memories out
    async def search(
        self, vector: np.ndarray, model: str, *, k: int, threshold: float, filters: IndexFilters
    ) -> list[SearchHit]:
        """Top-k by cosine similarity, best first."""
        raise NotImplementedError

    async def has_near(
        self, vector: np.ndarray, model: str, filters: IndexFilters, *, threshold: float
    ) -> bool:
        """Whether a stored vector of `model` has a cosine similarity of `threshold` or more."""
        raise NotImplementedError

    async def stored_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        async with self._reading(len(hashes)) as conn:
            for start in range(0, len(hashes), CHUNK):
                chunk = list(hashes[start : start + CHUNK])
                # Only content_hash in SQL: with `embedding_model = ?` too, SQLite picks
                # the (unselective) model index and scans every row.
                rows = (
                    await conn.execute(
                        select(M.c.content_hash, M.c.embedding_model, M.c.embedding).where(
                            in_(M.c.content_hash, chunk)
                        )
                    )
                ).all()
                for h, row_model, vector in rows:
                    if h not in found and row_model == model and vector is not None:
                        found[h] = np.asarray(vector, dtype=np.float32)
        return found

    async def get_many(
        self, ids: Sequence[uuid.UUID], *, with_vector: bool = False, conn: Any = None
    ) -> dict[uuid.UUID, Memory]:
        if conn is None:
            async with self._reading(len(ids)) as own:
                return await self.get_many(ids, with_vector=with_vector, conn=own)
        found: dict[uuid.UUID, Memory] = {}
        selected = columns(with_vector)
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            rows = (await conn.execute(select(*selected).where(in_(M.c.id, chunk)))).all()
            for row in rows:
                found[row.id] = to_memory(row)
        return found

    async def recent(self, room_id: uuid.UUID, n: int, kinds: list[str] | None) -> list[Memory]:
        stmt = _recent(n, tuple(kinds) if kinds else ())
        async with self._reading(n) as conn:
            rows = (await conn.execute(stmt, {"room": room_id})).all()
        return [to_memory(r) for r in reversed(rows)]

    async def list_memories(
        self,
        filters: IndexFilters,
        *,
        limit: int | None,
        offset: int,
        with_vectors: bool,
        oldest_first: bool,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[Memory]:
        stmt = filtered(select(*columns(with_vectors)), filters)
        if after is not None:  # keyset: what follows (created_at, id) in this order
            moment, last = after
            beyond = (M.c.created_at > moment) if oldest_first else (M.c.created_at < moment)
            tie = (M.c.id > last) if oldest_first else (M.c.id < last)
            stmt = stmt.where(or_(beyond, and_(M.c.created_at == moment, tie)))
        order = (
            (M.c.created_at.asc(), M.c.id.asc())
            if oldest_first
            else (M.c.created_at.desc(), M.c.id.desc())
        )
        stmt = stmt.order_by(*order).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        # A person's memories (the fact evaluator's known facts every few turns, the fact
        # cache's misses): a few rows by ix_memories_agent_entity_kind_created, read like
        # recent() (SQLite: inline on the event loop). 100k memories, 5 facts, 200 reads
        # alternating in one process: 0.33-0.34 -> 0.13 ms CPU per read.
        person = filters.agent_id is not None and filters.entity_id is not None
        quick = person and limit is not None and limit + offset <= QUICK_ROWS
        async with self.quick_read() if quick else self.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [to_memory(r) for r in rows]

    async def count(self, filters: IndexFilters) -> int:
        stmt = filtered(select(func.count()).select_from(M), filters)
        async with self.read() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)

    async def ids_matching(self, digits: str) -> list[Any]:
        """Up to two memory ids whose hex digits start or end with `digits` (a listing
        shows the last 8: memory.ids.short)."""
        where = f"{self.id_text} LIKE :p OR {self.id_text} LIKE :s"
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    text(f"SELECT id FROM memories WHERE {where} LIMIT 2"),
                    {"p": digits + "%", "s": "%" + digits},
                )
            ).all()
        return [r[0] for r in rows]

    async def id_page(self, after: uuid.UUID | None, limit: int) -> list[Any]:
        """(id, content) of the next `limit` memories in id order (reembed's batches)."""
        stmt = select(M.c.id, M.c.content).order_by(M.c.id).limit(limit)
        if after is not None:
            stmt = stmt.where(M.c.id > after)
        async with self.read() as conn:
            return list((await conn.execute(stmt)).all())

    async def stats(self, agent_id: uuid.UUID | None) -> dict[str, Any]:
        stmt = select(M.c.kind, func.count(), func.min(M.c.created_at), func.max(M.c.created_at))
        if agent_id is not None:
            stmt = stmt.where(M.c.agent_id == agent_id)
        stmt = stmt.group_by(M.c.kind)
        async with self.read() as conn:
            rows = (await conn.execute(stmt)).all()
            no_vec = select(func.count()).select_from(M).where(M.c.embedding.is_(None))
            dup = select(func.count()).select_from(M).where(M.c.unique.is_(False))
            rooms = select(func.count(func.distinct(M.c.room_id)))
            if agent_id is not None:
                no_vec = no_vec.where(M.c.agent_id == agent_id)
                dup = dup.where(M.c.agent_id == agent_id)
                rooms = rooms.where(M.c.agent_id == agent_id)
            without_vectors = int((await conn.execute(no_vec)).scalar() or 0)
            duplicates = int((await conn.execute(dup)).scalar() or 0)
            room_count = int((await conn.execute(rooms)).scalar() or 0)
        kinds = {str(r[0]): int(r[1]) for r in rows}
        oldest: datetime | None = min((r[2] for r in rows), default=None)
        newest: datetime | None = max((r[3] for r in rows), default=None)
        return {
            "total": sum(kinds.values()),
            "by_kind": kinds,
            "rooms": room_count,
            "without_vectors": without_vectors,
            "not_unique": duplicates,
            "oldest": oldest,
            "newest": newest,
        }


# Hot-path statements built once, their values bound at execution: every turn reads its
# room's recent messages and every insert moves its room's last_active_at, and building
# the statement (SQLAlchemy's coercions, per call) cost more CPU than running it.


@cache
def _touch_room() -> Any:
    moment = bindparam("moment", type_=ROOMS.c.last_active_at.type)
    return (
        update(ROOMS)
        .where(ROOMS.c.id == bindparam("room", type_=ROOMS.c.id.type))
        .where(ROOMS.c.last_active_at < moment)
        .values(last_active_at=moment)
    )


@lru_cache(maxsize=64)
def _recent(n: int, kinds: tuple[str, ...]) -> Any:
    stmt = select(*columns(False)).where(M.c.room_id == bindparam("room", type_=M.c.room_id.type))
    if kinds:
        stmt = stmt.where(in_(M.c.kind, list(kinds)))
    return stmt.order_by(M.c.created_at.desc(), M.c.id.desc()).limit(n)
