"""The PostgreSQL backend: pgvector, two HNSW indexes, bulk loads and advisory locks.

The vectors are split between two HNSW indexes by `memories.vector_segment` (see
schema.py): the main index takes what conversations add, row by row; the bulk segment
takes large loads, its index dropped for the load and built once at its end.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, TypeVar

import numpy as np
from sqlalchemy import Connection, text, update

from carrier_cli.memory.async_engine import AsyncEngine
from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.postgres import bulk
from carrier_cli.memory.postgres.bulk import (
    BULK_LOCK,
    PG_MAX_INDEXED_DIM,
    VECTOR_LOCK,
    BulkPlan,
    closing_quietly,
    create_vector_indexes,
    drop_vector_indexes,
    unless,
)
from carrier_cli.memory.postgres.check import CONNECT_HINT
from carrier_cli.memory.postgres.engine import HNSW_EF_SEARCH, make_engine
from carrier_cli.memory.postgres.replan import ReplanningConnection, once_more
from carrier_cli.memory.postgres.room_locks import RoomLocks
from carrier_cli.memory.postgres.search import search_params, search_statements
from carrier_cli.memory.rows import IndexFilters, InsertExtra, M, memory_row, to_memory
from carrier_cli.memory.schema import BULK_SEGMENT, BULK_VECTOR_INDEX, MAIN_VECTOR_INDEX
from carrier_cli.memory.sql import SqlBackend, StoredModel
from carrier_cli.memory.types import Memory, SearchHit

T = TypeVar("T")

# A load's statements (its INSERTs, and the index DDL around them) wait for a lock on
# `memories` only behind another session's short work: another process's first ALTER of
# the vector column, a turn inserting the same id (milliseconds), or DDL of a load whose
# BULK_LOCK was lost. 60 s is well over 100 times those; a wait longer than that is a lock
# that will not be let go (a transaction left open, another process stuck), and the load
# fails with a StorageFailure saying so (an import: how far it got; a rerun continues)
# instead of waiting for ever. Transaction-local: a turn's writes keep the server default.
LOAD_LOCK_TIMEOUT_SQL = "SET LOCAL lock_timeout = '60s'"


class PostgresBackend(SqlBackend):
    name: ClassVar[str] = "postgresql"
    sizes_bulk_loads: ClassVar[bool] = True
    dims_sql: ClassVar[str] = "vector_dims(embedding)"
    id_text: ClassVar[str] = "replace(CAST(id AS TEXT), '-', '')"
    day_sql: ClassVar[str] = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    read_options: ClassVar[dict[str, Any]] = {"isolation_level": "AUTOCOMMIT"}  # no BEGIN
    connect_hint: ClassVar[str] = CONNECT_HINT
    locks_rooms: ClassVar[bool] = True  # several processes may share the database

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        super().__init__(engine, url)
        self._vectors_ready = False
        self._bulk: BulkPlan | None = None  # a bulk load under way in this backend
        self._bulk_started = False
        self._segment: int | None = None  # vector_segment of rows inserted now
        self._loading = False  # inside bulk_load (any plan): lock waits are bounded
        self._room_locks = RoomLocks(url)

    # ------------------------------------------------------------------ the backend's own
    @staticmethod
    def make_engine(url: str) -> AsyncEngine:
        return make_engine(url)

    @staticmethod
    def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
        from carrier_cli.memory.postgres.failures import storage_failure

        return storage_failure(exc, url)

    @staticmethod
    def missing(url: str) -> bool:
        """A server's database is never "missing" before connecting to it."""
        return False

    @staticmethod
    async def check_database(url: str) -> list[dict[str, Any]]:
        from carrier_cli.memory.postgres.check import check_postgres

        return await check_postgres(url)

    def insert(self, target: Any) -> Any:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(target)

    async def close(self) -> None:
        await self._room_locks.close()
        await super().close()

    def room_lock(
        self, room_id: uuid.UUID, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """The room's session advisory lock, for one turn (memory.postgres.room_locks)."""
        return self._room_locks.hold(room_id, on_wait)

    # ------------------------------------------------------------------ statements
    # Another process's ALTER of `memories.embedding` makes this one's prepared statements
    # stale: each read statement and each run_write transaction is retried once
    # (memory.postgres.replan).
    @asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        async with super().read() as conn:
            yield ReplanningConnection(conn)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        return await once_more(lambda: super(PostgresBackend, self).run_write(work))

    # ------------------------------------------------------------------ the vector column
    async def prepare_vectors(self, dim: int, *, force: bool) -> None:
        """Give `memories.embedding` its dimension and the HNSW cosine indexes. Done when the
        first model is known (and again by reembed), since vector(N) needs N. Also
        rebuilds an index that a bulk load killed half-way left missing."""
        if self._vectors_ready and not force:
            return
        async with self.write() as conn:
            await self._bound_locks(conn)
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({VECTOR_LOCK})"))
            current = (
                await conn.execute(
                    text(
                        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass "
                        "AND attname = 'embedding'"
                    )
                )
            ).scalar()
            altered = current != dim
            if altered:
                await drop_vector_indexes(conn)
                await conn.execute(
                    text(f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({int(dim)})")
                )
            # A bulk load under way (here or in another process) builds its indexes at
            # its end; building them now would make its inserts maintain them row by row.
            if (
                dim <= PG_MAX_INDEXED_DIM
                and (
                    await conn.execute(text(f"SELECT pg_try_advisory_xact_lock({BULK_LOCK})"))
                ).scalar()
            ):
                await create_vector_indexes(conn)
        if altered:
            # Pooled connections hold prepared statements typed against the old column.
            await self.engine.dispose()
        self._vectors_ready = True

    async def clear_vectors(self) -> None:
        async with self.write() as conn:
            await drop_vector_indexes(conn)
            await conn.execute(
                text("ALTER TABLE memories ALTER COLUMN embedding TYPE vector USING NULL")
            )
            await conn.execute(update(M).values(embedding_model=None, vector_segment=None))
        await self.engine.dispose()
        self._vectors_ready = False

    async def vector_indexes(self) -> dict[str, dict[str, Any]] | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE vector_segment IS NULL), "
                        f"count(*) FILTER (WHERE vector_segment = {BULK_SEGMENT}), "
                        "to_regclass(:main) IS NOT NULL, to_regclass(:bulk) IS NOT NULL "
                        "FROM memories WHERE embedding IS NOT NULL"
                    ),
                    {"main": MAIN_VECTOR_INDEX, "bulk": BULK_VECTOR_INDEX},
                )
            ).one()
        return {
            "main": {"vectors": int(row[0]), "indexed": bool(row[2])},
            "bulk": {"vectors": int(row[1]), "indexed": bool(row[3])},
        }

    # ------------------------------------------------------------------ bulk loads
    async def _bound_locks(self, conn: Any) -> None:
        if self._loading:
            await conn.execute(text(LOAD_LOCK_TIMEOUT_SQL))

    @asynccontextmanager
    async def bulk_load(self, rows: int | None, stored: StoredModel) -> AsyncIterator[None]:
        """Keep HNSW maintenance out of a large load's inserts (see MemoryStore.bulk_load
        for the three plans). `stored` gives the database's (model, dimension), fresh.
        Every plan bounds the load's lock waits (LOAD_LOCK_TIMEOUT_SQL)."""
        self._loading = True
        try:
            async with self._planned_load(rows, stored):
                yield
        finally:
            self._loading = False

    @asynccontextmanager
    async def _planned_load(self, rows: int | None, stored: StoredModel) -> AsyncIterator[None]:
        model = await stored()
        if model is not None and model[1] > PG_MAX_INDEXED_DIM:
            yield  # no HNSW index at this dimension: every search is exact anyway
            return
        if rows is not None and rows < bulk.BULK_MIN_ROWS:
            yield
            return
        # When the load fails, its cleanup (index rebuild, advisory unlock, closing the
        # lock connection) is best effort: on a server that went away each step fails too,
        # and its error would replace the real cause. A dead session's advisory lock ends
        # with it, and an index left missing is rebuilt by the next write.
        failed = False
        async with closing_quietly(self.engine.connect()) as lock:
            await lock.execution_options(isolation_level="AUTOCOMMIT")
            await lock.execute(text(f"SELECT pg_advisory_lock({BULK_LOCK})"))
            try:
                plan = await bulk.bulk_plan(lock, rows)
                if plan == "rowwise":
                    yield  # a failure is marked by the `except` below, before the unlock
                    return
                # The indexes are dropped by the load's first insert (begin_bulk): a load
                # that adds nothing (an import run twice) rebuilds nothing.
                self._bulk, self._bulk_started = plan, False
                self._segment = BULK_SEGMENT if plan == "segment" else None
                try:
                    yield
                except BaseException:
                    failed = True
                    raise
                finally:
                    started = self._bulk_started
                    self._bulk, self._bulk_started, self._segment = None, False, None
                    if started:
                        async with unless(failed):
                            await self._finish_bulk(plan, stored)
            except BaseException:
                failed = True
                raise
            finally:
                async with unless(failed):
                    await lock.execute(text(f"SELECT pg_advisory_unlock({BULK_LOCK})"))

    async def begin_bulk(self) -> None:
        if self._bulk:
            await self._start_bulk()

    async def _start_bulk(self) -> None:
        self._bulk_started = True
        async with self.write() as conn:
            await self._bound_locks(conn)
            await conn.execute(text(f"DROP INDEX IF EXISTS {BULK_VECTOR_INDEX}"))
            if self._bulk == "rebuild":
                await conn.execute(text(f"DROP INDEX IF EXISTS {MAIN_VECTOR_INDEX}"))

    async def _finish_bulk(self, plan: BulkPlan, stored: StoredModel) -> None:
        model = await stored()
        async with self.write() as conn:
            await self._bound_locks(conn)
            if plan == "rebuild":
                await conn.execute(
                    update(M).where(M.c.vector_segment.is_not(None)).values(vector_segment=None)
                )
            if model is not None and model[1] <= PG_MAX_INDEXED_DIM:
                await conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
                await create_vector_indexes(conn)
        async with self.write() as conn:
            # Not bounded: ANALYZE's lock conflicts only with VACUUM and DDL, and may wait
            # for an anti-wraparound autovacuum (which does not yield, and ends); failing
            # here would report a load that stored everything as failed.
            # Fresh statistics, or the planner keeps estimating a tiny table (or segment)
            # and sorts every row instead of using the index. After a segment load only
            # the segment's share is new, and a small sample tells it (0.05 s, not 0.5).
            if plan == "segment":
                await conn.execute(text("SET LOCAL default_statistics_target = 10"))
                await conn.execute(text("ANALYZE memories (vector_segment)"))
            else:
                await conn.execute(text("ANALYZE memories"))

    # ------------------------------------------------------------------ memories in and out
    async def insert_memories(
        self,
        memories: Sequence[Memory],
        vectors: Sequence[np.ndarray | None],
        digests: Sequence[str],
        *,
        extra: InsertExtra | None = None,
    ) -> set[uuid.UUID] | None:
        # SQLAlchemy's executemany takes a dict a row (its bind processors encode them).
        rows = [memory_row(m, v, d) for m, v, d in zip(memories, vectors, digests, strict=True)]
        for row in rows:
            row["vector_segment"] = self._segment if row["embedding"] is not None else None

        bounded = self._loading

        def write(conn: Connection) -> None:
            if bounded:
                conn.execute(text(LOAD_LOCK_TIMEOUT_SQL))
            self._insert_rows(conn, rows)
            self._touch_rooms(conn, memories)
            if extra is not None:
                # add_many asked which ids exist first; a racing insert of the same id
                # is skipped by the outbox's own unique (webhook, event_id, event_type).
                extra(conn, memories)

        if self._bulk and not self._bulk_started and any(r["embedding"] is not None for r in rows):
            await self._start_bulk()
        await self.run_write(write)
        return None

    async def search(
        self, vector: np.ndarray, model: str, *, k: int, threshold: float, filters: IndexFilters
    ) -> list[SearchHit]:
        pairs = await self._search(vector, k=k, threshold=threshold, filters=filters, full=True)
        return [SearchHit(memory=m, score=score) for m, score in pairs]

    async def has_near(
        self, vector: np.ndarray, model: str, filters: IndexFilters, *, threshold: float
    ) -> bool:
        return bool(await self._search(vector, k=1, threshold=threshold, filters=filters))

    async def _search(
        self,
        vector: np.ndarray,
        *,
        k: int,
        threshold: float,
        filters: IndexFilters,
        full: bool = False,
    ) -> list[tuple[Any, float]]:
        """(id, score) pairs, or (Memory, score) with full=True: the top k of the main
        index and of the bulk segment (see bulk_load), asked at once on two connections,
        so a search costs one HNSW probe's time rather than two. Each arm takes its own
        connection and holds no other, so concurrent searches cannot starve the pool.
        Connections already have hnsw.ef_search and iterative_scan set (postgres.engine)."""
        params = search_params(vector, k, filters)

        async def top(stmt: Any) -> list[Any]:
            async with self.read() as conn:
                if k > HNSW_EF_SEARCH:
                    await conn.execute(
                        text("SELECT set_config('hnsw.ef_search', :ef, false)"), {"ef": str(k)}
                    )
                return list((await conn.execute(stmt, params)).all())

        main, segment = search_statements(full, frozenset(params), filters.unique_only)
        main_rows, bulk_rows = await asyncio.gather(top(main), top(segment))
        found = heapq.nsmallest(k, [*main_rows, *bulk_rows], key=lambda r: float(r.distance))
        hits = [(to_memory(r) if full else r[0], 1.0 - float(r.distance)) for r in found]
        return [(item, score) for item, score in hits if score >= threshold]
