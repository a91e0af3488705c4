"""MemoryStore: the one way the runtime, the clients and the CLI reach long-term memory.

The same class serves SQLite (default, zero set-up) and PostgreSQL + pgvector (chosen by
the URL). Everything outside this module sees the dataclasses in `memory.types` only.

Vectors are stored unit-length, with the id of the model that made them. A database holds
vectors of one model at a time: adding or searching with another model is refused with a
message that names both and points at `carrier memory reembed`, instead of silently
comparing incompatible vectors (ElizaOS's "384 vs 1536" failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import heapq
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Integer,
    Table,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory.engine import (
    AUTOCOMMIT_READ,
    IMMEDIATE,
    InlineConnection,
    SqliteWriter,
    make_engine,
    make_sqlite_reader,
)
from carrier_cli.memory.schema import (
    BULK_SEGMENT,
    BULK_VECTOR_INDEX,
    MAIN_VECTOR_INDEX,
    AgentRow,
    CacheRow,
    EmbeddingVector,
    EntityRow,
    MemoryRow,
    ParticipantRow,
    RelationshipRow,
    RoomRow,
    hnsw_index_ddl,
)
from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room, SearchHit, stable_id
from carrier_cli.memory.urls import backend_of, mask_url, normalise_url
from carrier_cli.memory.vector_index import INDEX_STATE_SQL, IndexFilters, SqliteVectorIndex

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.llm.base import Embedder

DEDUPE_THRESHOLD = 0.95
EMBED_BATCH = 512
_CHUNK = 500  # ids per IN (...) clause
QUICK_ROWS = 64  # reads of up to this many rows may run inline (MemoryStore._quick_read)
# HNSW: ef_search 300 (pgvector default 40) with schema.HNSW_OPTIONS measured recall@10
# >= 0.95 on the benchmark's clustered 256-d vectors; search stays within a few
# milliseconds at 100k rows.
HNSW_EF_SEARCH = 300
PG_MAX_INDEXED_DIM = 2000
# PostgreSQL bulk loads (see bulk_load): inserting one row into an HNSW index costs about
# this many times building the index costs per row (1.5-2 ms vs ~0.25 ms at 100k rows,
# 256-d, 2 cores), and loads below BULK_MIN_ROWS are not worth the DDL.
HNSW_INSERT_VS_BUILD = 6
BULK_MIN_ROWS = 1_000
BULK_LOCK = 7261057  # advisory lock key held for the whole of a bulk load
VECTOR_LOCK = 7261056  # advisory lock key around changes to the vector column's type

BulkPlan = Literal["rowwise", "segment", "rebuild"]


log = logging.getLogger(__name__)
T = TypeVar("T")


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


M = _table(MemoryRow)
ROOMS = _table(RoomRow)


class EmbeddingModelMismatch(InputError):
    """The database's vectors come from another model than the configured embedder."""


def content_hash(text_value: str) -> str:
    return hashlib.sha256(text_value.encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _unit(vector: Any) -> np.ndarray | None:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return array / norm


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class MemoryStore:
    """Open with `await MemoryStore.open(url)` or `from_settings`; close with `close()`."""

    def __init__(self, engine: AsyncEngine, url: str, embedder: Embedder) -> None:
        self.engine = engine
        self.url = url
        self.backend = backend_of(url)
        self.embedder = embedder
        self.session: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._index = SqliteVectorIndex() if self.backend == "sqlite" else None
        self._db_model: tuple[str, int] | None = None
        self._vector_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._pg_vectors_ready = False
        self._claimed: tuple[str, int] | None = None  # model chosen by this process's first write
        self._bulk: BulkPlan | None = None  # a bulk load under way in this store (bulk_load)
        self._bulk_started = False
        self._segment: int | None = None  # vector_segment of rows inserted now (bulk_load)
        # SQLite has one writer at a time. Writers of this process queue here rather than
        # in SQLite's busy handler, which sleeps in steps of up to 100 ms while holding a
        # pooled connection (100 rooms at once spent seconds per BEGIN IMMEDIATE that way).
        # Other processes are still kept apart by BEGIN IMMEDIATE + busy_timeout.
        self._write_lock = asyncio.Lock() if self.backend == "sqlite" else None
        self._writer: SqliteWriter | None = None
        self._writer_checked = False
        self._reader: Engine | None = None
        self._reader_checked = False

    # ------------------------------------------------------------------ opening
    @classmethod
    async def open(
        cls, url: str | None = None, *, embedder: Embedder | None = None, create: bool = True
    ) -> MemoryStore:
        """An empty database is initialised (create=True); an older schema is never
        upgraded implicitly: that is `carrier db upgrade`, run on purpose."""
        from carrier_cli.memory.migrate import schema_state, upgrade

        full_url = normalise_url(url)
        engine = make_engine(full_url)
        try:
            state = await _connect_check(engine, full_url, schema_state)
            if state.status == "empty":
                if not create:
                    raise InputError(
                        f"The database {mask_url(full_url)} has not been initialised.",
                        hint="Run `carrier db init`.",
                    )
                await upgrade(engine)
                await engine.dispose()  # reconnect: the vector type exists only now
            elif state.status == "behind":
                raise InputError(
                    f"The database {mask_url(full_url)} has an older schema "
                    f"(revision {state.revision or 'none'}; this Carrier needs "
                    f"{', '.join(state.heads)}).",
                    hint="Run `carrier db upgrade` to migrate it (back up the database first).",
                )
            elif state.status == "unknown":
                raise InputError(
                    f"The database {mask_url(full_url)} is at schema revision "
                    f"{state.revision}, which this version of Carrier does not know; it was "
                    "probably written by a newer Carrier.",
                    hint="Upgrade Carrier, or point DATABASE_URL at another database.",
                )
        except BaseException:
            await engine.dispose()
            raise
        if embedder is None:
            from carrier_cli.llm.embeddings import LocalEmbedder

            embedder = LocalEmbedder()
        return cls(engine, full_url, embedder)

    @classmethod
    async def from_settings(
        cls, settings: Settings, *, embedder: Embedder | None = None, create: bool = True
    ) -> MemoryStore:
        if embedder is None:
            from carrier_cli.llm.embeddings import create_embedder

            embedder = create_embedder(settings)
        return await cls.open(settings.database_url, embedder=embedder, create=create)

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.dispose()
        await self.engine.dispose()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.connect() as conn:
                await conn.execution_options(**{IMMEDIATE: True})
                async with conn.begin():
                    yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                yield conn

    async def _run_write(self, work: Callable[[Connection], T]) -> T:
        """One write transaction as a synchronous function of a Connection. For an SQLite
        file it runs whole in the store's writer thread (one hop, queued behind this
        process's other writes); otherwise on an async connection via run_sync."""
        if not self._writer_checked:
            self._writer_checked = True
            self._writer = SqliteWriter.create(self.url)
        if self._writer is not None:
            return await self._writer.run(work)
        async with self._write() as conn:
            return await conn.run_sync(work)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if self.backend == "sqlite":
                await conn.execution_options(**{AUTOCOMMIT_READ: True})
            else:  # no BEGIN/COMMIT round trips around reads
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def _quick_read(self) -> AsyncIterator[AsyncConnection | InlineConnection]:
        """For small indexed reads on the hot path (a few rows by key, a room's recent
        messages): on an SQLite file they run synchronously on the event loop thread, as
        the thread hop of an async read costs more than the read; elsewhere `_read`."""
        if not self._reader_checked:
            self._reader_checked = True
            self._reader = make_sqlite_reader(self.url)
        if self._reader is None:
            async with self._read() as conn:
                yield conn
            return
        with self._reader.connect() as sync:
            sync.execution_options(**{AUTOCOMMIT_READ: True})
            with sync.begin():
                yield InlineConnection(sync)

    # ------------------------------------------------------------------ agents, entities, rooms
    async def ensure_agent(self, name: str, agent_id: uuid.UUID | None = None) -> uuid.UUID:
        agent_id = agent_id or stable_id("character", name)
        table = _table(AgentRow)
        stmt = _insert(self.backend, table).values(
            id=agent_id, name=name, created_at=utcnow(), metadata={}
        )
        upsert = stmt.on_conflict_do_update(index_elements=["id"], set_={"name": name})
        await self._run_write(lambda conn: conn.execute(upsert))
        return agent_id

    async def ensure_entity(
        self, platform: str, external_id: str, name: str, metadata: dict[str, Any] | None = None
    ) -> Entity:
        entity_id = stable_id(platform, "entity", external_id)
        table = _table(EntityRow)
        backend = self.backend

        def write(conn: Connection) -> tuple[list[str], dict[str, Any]]:
            row = conn.execute(select(table).where(table.c.id == entity_id)).first()
            if row is None:
                names = [name] if name else []
                meta = dict(metadata or {})
                conn.execute(
                    _insert(backend, table)
                    .values(
                        id=entity_id,
                        platform=platform,
                        external_id=external_id,
                        names=names,
                        created_at=utcnow(),
                        metadata=meta,
                    )
                    .on_conflict_do_nothing(index_elements=["id"])
                )
                return names, meta
            names = list(row.names or [])
            meta = dict(row.metadata or {})
            changed = False
            if name and name not in names:
                names.append(name)
                changed = True
            if metadata:
                meta.update(metadata)
                changed = True
            if changed:
                conn.execute(
                    update(table).where(table.c.id == entity_id).values(names=names, metadata=meta)
                )
            return names, meta

        names, meta = await self._run_write(write)
        return Entity(
            id=entity_id, names=names, platform=platform, external_id=external_id, metadata=meta
        )

    async def get_entity(self, entity_id: uuid.UUID) -> Entity | None:
        table = _table(EntityRow)
        async with self._read() as conn:
            row = (await conn.execute(select(table).where(table.c.id == entity_id))).first()
        if row is None:
            return None
        return Entity(
            id=row.id,
            names=list(row.names or []),
            platform=row.platform,
            external_id=row.external_id,
            metadata=dict(row.metadata or {}),
        )

    async def ensure_room(
        self, agent_id: uuid.UUID, source: str, external_id: str, name: str | None = None
    ) -> Room:
        room_id = stable_id(source, "room", external_id, agent_id)
        now = utcnow()
        backend = self.backend
        agent = (
            _insert(backend, _table(AgentRow))
            .values(id=agent_id, name=f"agent-{str(agent_id)[:8]}", created_at=now, metadata={})
            .on_conflict_do_nothing(index_elements=["id"])
        )
        stmt = _insert(backend, ROOMS).values(
            id=room_id,
            agent_id=agent_id,
            source=source,
            external_id=external_id,
            name=name,
            created_at=now,
            last_active_at=now,
            metadata={},
        )
        if name is not None:
            stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"name": name})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["id"])

        def write(conn: Connection) -> Any:
            conn.execute(agent)
            conn.execute(stmt)
            return conn.execute(select(ROOMS).where(ROOMS.c.id == room_id)).one()

        return _room(await self._run_write(write))

    async def ensure_participant(self, room_id: uuid.UUID, entity_id: uuid.UUID) -> None:
        stmt = (
            _insert(self.backend, _table(ParticipantRow))
            .values(room_id=room_id, entity_id=entity_id, joined_at=utcnow())
            .on_conflict_do_nothing(index_elements=["room_id", "entity_id"])
        )
        await self._run_write(lambda conn: conn.execute(stmt))

    async def participants(self, room_id: uuid.UUID) -> list[Entity]:
        ent = _table(EntityRow)
        part = _table(ParticipantRow)
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(ent)
                    .join(part, part.c.entity_id == ent.c.id)
                    .where(part.c.room_id == room_id)
                    .order_by(part.c.joined_at)
                )
            ).all()
        return [
            Entity(
                id=r.id,
                names=list(r.names or []),
                platform=r.platform,
                external_id=r.external_id,
                metadata=dict(r.metadata or {}),
            )
            for r in rows
        ]

    async def get_room(self, room_id: uuid.UUID) -> Room | None:
        async with self._read() as conn:
            row = (await conn.execute(select(ROOMS).where(ROOMS.c.id == room_id))).first()
        return _room(row) if row is not None else None

    async def find_room(self, agent_id: uuid.UUID, source: str, external_id: str) -> Room | None:
        return await self.get_room(stable_id(source, "room", external_id, agent_id))

    async def list_rooms(self, agent_id: uuid.UUID, source: str | None = None) -> list[Room]:
        """Newest activity first (what `chat --continue` wants)."""
        query = select(ROOMS).where(ROOMS.c.agent_id == agent_id)
        if source is not None:
            query = query.where(ROOMS.c.source == source)
        query = query.order_by(ROOMS.c.last_active_at.desc())
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_room(r) for r in rows]

    async def add_relationship(
        self,
        agent_id: uuid.UUID,
        entity_a: uuid.UUID,
        entity_b: uuid.UUID,
        kind: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        rel_id = stable_id("relationship", agent_id, entity_a, entity_b, kind)
        table = _table(RelationshipRow)
        async with self._write() as conn:
            stmt = _insert(self.backend, table).values(
                id=rel_id,
                agent_id=agent_id,
                entity_a=entity_a,
                entity_b=entity_b,
                kind=kind,
                strength=1.0,
                created_at=utcnow(),
                metadata=dict(metadata or {}),
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"strength": table.c.strength + 1.0, "metadata": stmt.excluded.metadata},
                )
            )

    async def relationships(
        self, agent_id: uuid.UUID, entity_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        table = _table(RelationshipRow)
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(table)
                    .where(table.c.agent_id == agent_id)
                    .where((table.c.entity_a == entity_id) | (table.c.entity_b == entity_id))
                )
            ).all()
        return [
            {
                "entity_a": r.entity_a,
                "entity_b": r.entity_b,
                "kind": r.kind,
                "strength": r.strength,
                "metadata": r.metadata,
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ cache
    async def cache_get(self, key: str) -> Any | None:
        table = _table(CacheRow)
        async with self._read() as conn:
            row = (await conn.execute(select(table).where(table.c.key == key))).first()
        if row is None:
            return None
        if row.expires_at is not None and row.expires_at <= utcnow():
            async with self._write() as conn:
                await conn.execute(
                    delete(table).where(table.c.key == key).where(table.c.expires_at <= utcnow())
                )
            return None
        return row.value

    async def cache_set(self, key: str, value: Any, ttl: float | None = None) -> None:
        table = _table(CacheRow)
        expires = utcnow() + timedelta(seconds=ttl) if ttl is not None else None
        stmt = _insert(self.backend, table).values(key=key, value=value, expires_at=expires)
        async with self._write() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["key"],
                    set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
                )
            )

    async def cache_delete(self, key: str) -> None:
        table = _table(CacheRow)
        async with self._write() as conn:
            await conn.execute(delete(table).where(table.c.key == key))

    # ------------------------------------------------------------------ embedding model
    async def stored_model(self, *, refresh: bool = False) -> tuple[str, int] | None:
        """(model id, dimension) of the vectors in the database, None when there are none."""
        if self._db_model is not None and not refresh:
            return self._db_model
        dims = "vector_dims(embedding)" if self.backend == "postgresql" else "length(embedding)/4"
        async with self._read() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT embedding_model, {dims} FROM memories "
                        "WHERE embedding_model IS NOT NULL AND embedding IS NOT NULL LIMIT 1"
                    )
                )
            ).first()
        self._db_model = (str(row[0]), int(row[1])) if row is not None else None
        return self._db_model

    async def stored_models(self) -> dict[str, int]:
        """Every model with vectors in the database and how many (normally one)."""
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(M.c.embedding_model, func.count())
                    .where(M.c.embedding_model.is_not(None))
                    .group_by(M.c.embedding_model)
                )
            ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def _mismatch(self, stored: tuple[str, int], model: str, dim: int) -> EmbeddingModelMismatch:
        return EmbeddingModelMismatch(
            f"The memory database holds vectors from embedding model `{stored[0]}` "
            f"({stored[1]} dimensions), but the configured embedder is `{model}` "
            f"({dim} dimensions); they cannot be compared.",
            hint="Run `carrier memory reembed` to re-embed every memory with the new model, "
            "or switch embedding_provider/embedding_model back.",
        )

    async def _check_model(self, model: str, dim: int, *, writing: bool) -> bool:
        """True when vectors of `model` can be compared with the stored ones. Raises on a
        mismatch; on an empty PostgreSQL database, writing fixes the column's dimension."""
        stored = await self.stored_model() or self._claimed
        if stored is None:
            if writing:
                if self.backend == "postgresql":
                    await self._prepare_pg_vectors(dim)
                self._claimed = (model, dim)
            return writing
        if stored != (model, dim):
            raise self._mismatch(stored, model, dim)
        if writing and self.backend == "postgresql" and not self._pg_vectors_ready:
            await self._prepare_pg_vectors(dim)
        return True

    async def _prepare_pg_vectors(self, dim: int) -> None:
        """Give `memories.embedding` its dimension and the HNSW cosine indexes. Done when the
        first model is known (and again by reembed), since vector(N) needs N. Also
        rebuilds an index that a bulk load killed half-way left missing."""
        async with self._write() as conn:
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
                await _drop_vector_indexes(conn)
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
                await _create_vector_indexes(conn)
        if altered:
            # Pooled connections hold prepared statements typed against the old column.
            await self.engine.dispose()
        self._pg_vectors_ready = True

    @asynccontextmanager
    async def bulk_load(self, rows: int | None = None) -> AsyncIterator[None]:
        """For large loads (ingest, import, reembed) on PostgreSQL: keep HNSW maintenance
        out of the inserts, which is what limits a load there (row by row costs ~6x what
        building costs per row). `rows` is how many memories the load will add (None:
        unknown or most of the table). One of three plans, the cheapest:

        * rowwise: a small load; nothing special, the main index takes the rows.
        * segment: the rows go to the bulk segment, whose index is dropped now and built
          at the end over the segment (its older rows too). The main index, and the rows
          other processes add meanwhile, are untouched: a 10k load into a 100k table pays
          for 10k rows, not 110k.
        * rebuild: when the segment would outgrow the main index (an empty or small
          table, say): both indexes are dropped, the segment merged into the main one,
          and the main index built once at the end.

        Searches during a load stay correct: the rows without an index are scored
        exactly (slower). Bulk loads are serialised by an advisory lock; an index a killed
        load left missing is rebuilt by the next write. A no-op on SQLite."""
        if self.backend != "postgresql":
            yield
            return
        stored = await self.stored_model(refresh=True)
        if stored is not None and stored[1] > PG_MAX_INDEXED_DIM:
            yield  # no HNSW index at this dimension: every search is exact anyway
            return
        if rows is not None and rows < BULK_MIN_ROWS:
            yield
            return
        # When the load fails, its cleanup (index rebuild, advisory unlock, closing the
        # lock connection) is best effort: on a server that went away each step fails too,
        # and its error would replace the real cause. A dead session's advisory lock ends
        # with it, and an index left missing is rebuilt by the next write.
        failed = False
        async with _closing_quietly(self.engine.connect()) as lock:
            await lock.execution_options(isolation_level="AUTOCOMMIT")
            await lock.execute(text(f"SELECT pg_advisory_lock({BULK_LOCK})"))
            try:
                plan = await self._bulk_plan(lock, rows)
                if plan == "rowwise":
                    yield  # a failure is marked by the `except` below, before the unlock
                    return
                # The indexes are dropped by the load's first insert (_start_bulk): a load
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
                        async with _unless(failed):
                            await self._finish_bulk(plan)
            except BaseException:
                failed = True
                raise
            finally:
                async with _unless(failed):
                    await lock.execute(text(f"SELECT pg_advisory_unlock({BULK_LOCK})"))

    async def _start_bulk(self) -> None:
        self._bulk_started = True
        async with self._write() as conn:
            await conn.execute(text(f"DROP INDEX IF EXISTS {BULK_VECTOR_INDEX}"))
            if self._bulk == "rebuild":
                await conn.execute(text(f"DROP INDEX IF EXISTS {MAIN_VECTOR_INDEX}"))

    async def _bulk_plan(self, conn: AsyncConnection, rows: int | None) -> BulkPlan:
        counts = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE vector_segment IS NULL), "
                    f"count(*) FILTER (WHERE vector_segment = {BULK_SEGMENT}) "
                    "FROM memories WHERE embedding IS NOT NULL"
                )
            )
        ).one()
        main, segment = int(counts[0]), int(counts[1])
        if rows is None:
            return "rebuild"
        # Costs in units of "build one row". The segment may not outgrow the main index,
        # or the next loads would rebuild ever larger segments: past that, merge.
        rowwise = rows * HNSW_INSERT_VS_BUILD
        if segment + rows <= main:
            return "segment" if segment + rows < rowwise else "rowwise"
        return "rebuild" if main + segment + rows < rowwise else "rowwise"

    async def _finish_bulk(self, plan: BulkPlan) -> None:
        stored = await self.stored_model(refresh=True)
        async with self._write() as conn:
            if plan == "rebuild":
                await conn.execute(
                    update(M).where(M.c.vector_segment.is_not(None)).values(vector_segment=None)
                )
            if stored is not None and stored[1] <= PG_MAX_INDEXED_DIM:
                await conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
                await _create_vector_indexes(conn)
        async with self._write() as conn:
            # Fresh statistics, or the planner keeps estimating a tiny table (or segment)
            # and sorts every row instead of using the index. After a segment load only
            # the segment's share is new, and a small sample tells it (0.05 s, not 0.5).
            if plan == "segment":
                await conn.execute(text("SET LOCAL default_statistics_target = 10"))
                await conn.execute(text("ANALYZE memories (vector_segment)"))
            else:
                await conn.execute(text("ANALYZE memories"))

    # ------------------------------------------------------------------ embedding
    async def embed_texts(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Unit vectors for texts, None for empty ones. Each distinct text is embedded once:
        first an in-process cache, then vectors already stored for the same text (by content
        hash), and only then the embedder, in batches."""
        model = self.embedder.model_id
        results: list[np.ndarray | None] = [None] * len(texts)
        wanted: dict[str, list[int]] = {}
        for i, value in enumerate(texts):
            if not value or not value.strip():
                continue
            key = (model, content_hash(value))
            cached = self._vector_cache.get(key)
            if cached is not None:
                self._vector_cache.move_to_end(key)
                results[i] = cached
            else:
                wanted.setdefault(value, []).append(i)
        if not wanted:
            return results
        found = await self._stored_vectors(model, [content_hash(t) for t in wanted])
        todo = [t for t in wanted if content_hash(t) not in found]
        fresh: dict[str, np.ndarray | None] = {}
        for start in range(0, len(todo), EMBED_BATCH):
            batch = todo[start : start + EMBED_BATCH]
            array = await self._embed_batch(batch)
            for value, row in zip(batch, array, strict=True):
                fresh[value] = _unit(row)
        for value, positions in wanted.items():
            vector = found.get(content_hash(value))
            if vector is None:
                vector = fresh.get(value)
            if vector is not None:
                self._remember_vector((model, content_hash(value)), vector)
            for i in positions:
                results[i] = vector
        return results

    async def _embed_batch(self, batch: Sequence[str]) -> np.ndarray:
        embed_array: Callable[..., Any] | None = getattr(self.embedder, "embed_array", None)
        try:
            if embed_array is not None:
                array = np.asarray(await embed_array(batch), dtype=np.float32)
            else:
                array = np.asarray(await self.embedder.embed(batch), dtype=np.float32)
        except (InputError, RuntimeFailure):
            raise
        except Exception as exc:
            raise RuntimeFailure(
                f"Embedding with `{self.embedder.model_id}` failed: {type(exc).__name__}: {exc}",
                hint="Check embedding_provider, embedding_base_url and the API key, or use "
                "embedding_provider=local.",
            ) from exc
        if array.ndim != 2 or array.shape[0] != len(batch):
            raise RuntimeFailure(
                f"Embedder `{self.embedder.model_id}` returned an array of shape "
                f"{array.shape} for {len(batch)} texts."
            )
        return array

    def _remember_vector(self, key: tuple[str, str], vector: np.ndarray) -> None:
        self._vector_cache[key] = vector
        if len(self._vector_cache) > 20_000:
            self._vector_cache.popitem(last=False)

    async def _stored_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        async with self._quick_read() if len(hashes) <= QUICK_ROWS else self._read() as conn:
            for start in range(0, len(hashes), _CHUNK):
                chunk = list(hashes[start : start + _CHUNK])
                # Only content_hash in SQL: with `embedding_model = ?` too, SQLite picks
                # the (unselective) model index and scans every row.
                rows = (
                    await conn.execute(
                        select(M.c.content_hash, M.c.embedding_model, M.c.embedding).where(
                            _in(M.c.content_hash, chunk)
                        )
                    )
                ).all()
                for h, row_model, vector in rows:
                    if h not in found and row_model == model and vector is not None:
                        found[h] = np.asarray(vector, dtype=np.float32)
        return found

    # ------------------------------------------------------------------ adding
    async def add(self, memory: Memory, *, embed: bool = True, dedupe: bool = True) -> Memory:
        """Idempotent on memory.id: the same id again returns the stored row unchanged."""
        stored = await self.add_many([memory], embed=embed, dedupe=dedupe)
        return stored[0]

    async def add_many(
        self, memories: Sequence[Memory], *, embed: bool = True, dedupe: bool = True
    ) -> list[Memory]:
        """Store memories (those whose id already exists are returned as stored)."""
        if not memories:
            return []
        if self.backend == "sqlite":
            # SQLite reports which rows its insert took, so no existence query first: an
            # id already stored is skipped by the insert and read back afterwards (a
            # replay; rare), at the cost of having embedded its text for nothing.
            unique: dict[uuid.UUID, Memory] = {}
            for memory in memories:
                unique.setdefault(memory.id, memory)
            try:
                inserted = await self._insert_new(list(unique.values()), embed=embed, dedupe=dedupe)
            except EmbeddingModelMismatch:
                inserted = None  # maybe all stored already: decide as below
            if inserted is not None:
                missing = [i for i in unique if i not in inserted]
                existing = await self._get_many(missing) if missing else {}
                return [existing.get(m.id) or unique[m.id] for m in memories]
        existing = await self._get_many([m.id for m in memories])
        new: list[Memory] = []
        seen: set[uuid.UUID] = set()
        for memory in memories:
            if memory.id in existing or memory.id in seen:
                continue
            seen.add(memory.id)
            new.append(memory)
        if new:
            await self._insert_new(new, embed=embed, dedupe=dedupe)
        stored = {**existing, **{m.id: m for m in new}}
        return [stored[m.id] for m in memories]

    async def _insert_new(
        self, memories: list[Memory], *, embed: bool, dedupe: bool
    ) -> set[uuid.UUID] | None:
        """Insert (ids already stored are skipped); on SQLite, returns the ids inserted."""
        model = self.embedder.model_id
        now = utcnow()
        vectors: list[np.ndarray | None] = [None] * len(memories)
        to_embed: list[int] = []
        given: set[tuple[str, int]] = set()
        for i, memory in enumerate(memories):
            if memory.created_at is None:
                memory.created_at = now + timedelta(microseconds=i)
            elif memory.created_at.tzinfo is None:
                memory.created_at = memory.created_at.replace(tzinfo=UTC)
            memory.kind = MemoryKind(memory.kind)
            if memory.embedding is not None and len(memory.embedding) > 0:
                vector = _unit(memory.embedding)
                vectors[i] = vector
                if vector is not None:
                    memory.embedding_model = memory.embedding_model or model
                    given.add((memory.embedding_model, len(vector)))
            elif embed:
                to_embed.append(i)
        for vmodel, dim in sorted(given):
            await self._check_model(vmodel, dim, writing=True)
        if to_embed:
            embedded = await self.embed_texts([memories[i].text for i in to_embed])
            first = next((v for v in embedded if v is not None), None)
            if first is not None:
                if len(first) != self.embedder.dimension:
                    raise RuntimeFailure(
                        f"Embedder `{model}` returned {len(first)}-dimensional vectors but "
                        f"declares {self.embedder.dimension}.",
                        hint="Check embedding_dimensions for this model.",
                    )
                await self._check_model(model, len(first), writing=True)
            for i, vector in zip(to_embed, embedded, strict=True):
                vectors[i] = vector
                memories[i].embedding_model = model if vector is not None else None
        for memory, vector in zip(memories, vectors, strict=True):
            memory.embedding = vector.tolist() if vector is not None else None
            if vector is None:
                memory.embedding_model = None
        if dedupe:
            await self._mark_duplicates(memories, vectors)
        rows = [_row(m, v, self._segment) for m, v in zip(memories, vectors, strict=True)]
        index = self._index
        backend = self.backend

        def write(conn: Connection) -> tuple[int, int, int, list[str]] | None:
            # SQLite: note where the table ends before inserting. The rows past that point
            # are exactly this transaction's (it holds the write lock): they tell which
            # ids were new, and the vector index can take them without reading them back.
            before = conn.execute(text(INDEX_STATE_SQL)).one() if backend == "sqlite" else None
            for start in range(0, len(rows), _CHUNK):
                stmt = _insert(backend, M).on_conflict_do_nothing(index_elements=["id"])
                conn.execute(stmt, rows[start : start + _CHUNK])
            added: list[Any] = []
            if before is not None:
                added = list(
                    conn.execute(
                        text("SELECT rowid, id FROM memories WHERE rowid > :after ORDER BY rowid"),
                        {"after": int(before[1] or 0)},
                    ).all()
                )
                new_ids = {str(r[1]) for r in added}
                times = _room_times([m for m in memories if m.id.hex in new_ids])
            else:
                times = _room_times(memories)
            for room_id, moment in times.items():
                conn.execute(
                    update(ROOMS)
                    .where(ROOMS.c.id == room_id)
                    .where(ROOMS.c.last_active_at < moment)
                    .values(last_active_at=moment)
                )
            if before is None:
                return None
            rev, start_rowid = int(before[0] or 0), int(before[1] or 0)
            end_rowid = int(added[-1][0]) if added else start_rowid
            return rev, start_rowid, end_rowid, [str(r[1]) for r in added]

        if self._bulk and not self._bulk_started and any(v is not None for v in vectors):
            await self._start_bulk()
        written = await self._run_write(write)
        if written is None:
            return None
        if index is not None:
            index.append_written(*written, {row["id"].hex: row for row in rows})
        return {uuid.UUID(hex=i) for i in written[3]}

    async def _mark_duplicates(
        self, memories: list[Memory], vectors: list[np.ndarray | None]
    ) -> None:
        """ElizaOS: a memory within cosine 0.95 of another in the same room is not unique."""
        earlier: dict[tuple[uuid.UUID, uuid.UUID | None], list[np.ndarray]] = {}
        for memory, vector in zip(memories, vectors, strict=True):
            if vector is None or memory.room_id is None:
                continue
            key = (memory.agent_id, memory.room_id)
            batch = earlier.setdefault(key, [])
            duplicate = any(float(vector @ other) >= DEDUPE_THRESHOLD for other in batch)
            if not duplicate:
                duplicate = await self._has_near(vector, memory.agent_id, memory.room_id)
            if duplicate:
                memory.unique = False
            batch.append(vector)

    async def _has_near(
        self, vector: np.ndarray, agent_id: uuid.UUID, room_id: uuid.UUID | None
    ) -> bool:
        if room_id is None:
            return False
        stored = await self.stored_model() or self._claimed
        if stored is None:
            return False
        filters = IndexFilters(agent_id=agent_id, room_id=room_id)
        if self._index is None:
            return bool(
                await self._pg_search(vector, k=1, threshold=DEDUPE_THRESHOLD, filters=filters)
            )
        async with self._index_read() as conn:
            hits = await self._vector_search(
                conn, vector, stored[0], k=1, threshold=DEDUPE_THRESHOLD, filters=filters
            )
        return bool(hits)

    # ------------------------------------------------------------------ reading
    async def search(
        self,
        query: str | Sequence[float],
        *,
        agent_id: uuid.UUID | None = None,
        k: int = 10,
        threshold: float = 0.0,
        kinds: Sequence[MemoryKind | str] | None = None,
        room_id: uuid.UUID | None = None,
        entity_id: uuid.UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        unique_only: bool = False,
    ) -> list[SearchHit]:
        """Top-k by cosine similarity, best first. Memories without vectors never match."""
        if isinstance(query, str):
            if not query.strip():
                return []
            vector = (await self.embed_texts([query]))[0]
        else:
            vector = _unit(query)
        if vector is None:
            return []
        if not await self._check_model(self.embedder.model_id, len(vector), writing=False):
            return []  # no vectors stored yet
        filters = IndexFilters(
            agent_id=agent_id,
            room_id=room_id,
            entity_id=entity_id,
            kinds=[str(MemoryKind(k)) for k in kinds] if kinds else None,
            since=since,
            until=until,
            unique_only=unique_only,
        )
        stored = await self.stored_model()
        if stored is None:
            return []
        if self._index is None:
            pairs = await self._pg_search(
                vector, k=k, threshold=threshold, filters=filters, full=True
            )
            return [SearchHit(memory=m, score=score) for m, score in pairs]
        async with self._index_read() as conn:  # one connection for the whole search
            scored = await self._vector_search(
                conn, vector, stored[0], k=k, threshold=threshold, filters=filters
            )
            found = await self._get_many([i for i, _ in scored], conn=conn) if scored else {}
        if len(found) < len(scored) and self._index is not None:
            self._index.invalidate()  # deleted by another process since the cache was filled
        return [SearchHit(memory=found[i], score=s) for i, s in scored if i in found]

    def _index_read(self) -> Any:
        """Reads around a vector search: inline once the index is loaded (what is left to
        read is the rows added since, and the hits), async for the first, full load."""
        if self._index is not None and self._index.rev is not None:
            return self._quick_read()
        return self._read()

    async def _vector_search(
        self,
        conn: AsyncConnection | InlineConnection,
        vector: np.ndarray,
        model: str,
        *,
        k: int,
        threshold: float,
        filters: IndexFilters,
    ) -> list[tuple[uuid.UUID, float]]:
        """SQLite: the in-process vector index, brought up to date first."""
        assert self._index is not None  # PostgreSQL searches go through _pg_search
        await self._index.refresh(conn, model)
        return self._index.search(vector, k, threshold, filters)

    async def _pg_search(
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
        Connections already have hnsw.ef_search and iterative_scan set (memory.engine)."""
        params: dict[str, Any] = {"q": vector, "k": k}
        for name in ("agent_id", "room_id", "entity_id", "since", "until"):
            if getattr(filters, name) is not None:
                params[name] = getattr(filters, name)
        if filters.kinds:
            params["kinds"] = list(filters.kinds)

        async def top(stmt: Any) -> list[Any]:
            async with self._read() as conn:
                if k > HNSW_EF_SEARCH:
                    await conn.execute(
                        text("SELECT set_config('hnsw.ef_search', :ef, false)"), {"ef": str(k)}
                    )
                return list((await conn.execute(stmt, params)).all())

        main, bulk = _pg_search_statements(full, frozenset(params), filters.unique_only)
        main_rows, bulk_rows = await asyncio.gather(top(main), top(bulk))
        rows = heapq.nsmallest(k, [*main_rows, *bulk_rows], key=lambda r: float(r.distance))
        hits = [(_memory(r) if full else r[0], 1.0 - float(r.distance)) for r in rows]
        return [(item, score) for item, score in hits if score >= threshold]

    async def get(self, memory_id: uuid.UUID, *, with_vector: bool = True) -> Memory | None:
        found = await self._get_many([memory_id], with_vector=with_vector)
        return found.get(memory_id)

    async def _get_many(
        self,
        ids: Sequence[uuid.UUID],
        *,
        with_vector: bool = False,
        conn: AsyncConnection | InlineConnection | None = None,
    ) -> dict[uuid.UUID, Memory]:
        if conn is None:
            reading = self._quick_read() if len(ids) <= QUICK_ROWS else self._read()
            async with reading as own:
                return await self._get_many(ids, with_vector=with_vector, conn=own)
        found: dict[uuid.UUID, Memory] = {}
        columns = _columns(with_vector)
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            rows = (await conn.execute(select(*columns).where(_in(M.c.id, chunk)))).all()
            for row in rows:
                found[row.id] = _memory(row)
        return found

    async def recent(
        self,
        room_id: uuid.UUID,
        n: int = 32,
        *,
        kinds: Sequence[MemoryKind | str] | None = (MemoryKind.MESSAGE,),
    ) -> list[Memory]:
        """The last n memories of a room, oldest first (the order a prompt wants)."""
        stmt = select(*_columns(False)).where(M.c.room_id == room_id)
        if kinds:
            stmt = stmt.where(_in(M.c.kind, [str(MemoryKind(k)) for k in kinds]))
        stmt = stmt.order_by(M.c.created_at.desc(), M.c.id.desc()).limit(n)
        async with self._quick_read() if n <= QUICK_ROWS else self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_memory(r) for r in reversed(rows)]

    async def list(
        self,
        *,
        agent_id: uuid.UUID | None = None,
        kinds: Sequence[MemoryKind | str] | None = None,
        room_id: uuid.UUID | None = None,
        entity_id: uuid.UUID | None = None,
        limit: int | None = 50,
        offset: int = 0,
        with_vectors: bool = False,
        oldest_first: bool = False,
    ) -> list[Memory]:
        """Newest first by default."""
        filters = IndexFilters(
            agent_id=agent_id,
            room_id=room_id,
            entity_id=entity_id,
            kinds=[str(MemoryKind(k)) for k in kinds] if kinds else None,
        )
        stmt = _filtered(select(*_columns(with_vectors)), filters)
        order = (
            (M.c.created_at.asc(), M.c.id.asc())
            if oldest_first
            else (M.c.created_at.desc(), M.c.id.desc())
        )
        stmt = stmt.order_by(*order).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_memory(r) for r in rows]

    async def count(
        self,
        *,
        agent_id: uuid.UUID | None = None,
        kinds: Sequence[MemoryKind | str] | None = None,
        room_id: uuid.UUID | None = None,
    ) -> int:
        filters = IndexFilters(
            agent_id=agent_id,
            room_id=room_id,
            kinds=[str(MemoryKind(k)) for k in kinds] if kinds else None,
        )
        stmt = _filtered(select(func.count()).select_from(M), filters)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)

    async def resolve_id(self, value: str) -> uuid.UUID:
        """A full memory id, or an unambiguous prefix of at least 8 hex digits."""
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
        digits = value.replace("-", "").lower()
        if len(digits) < 8 or any(c not in "0123456789abcdef" for c in digits):
            raise InputError(
                f"{value!r} is not a memory id.",
                hint="Give the full id or at least its first 8 characters, as shown by "
                "`carrier memory list`.",
            )
        column = "id" if self.backend == "sqlite" else "replace(CAST(id AS TEXT), '-', '')"
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    text(f"SELECT id FROM memories WHERE {column} LIKE :p LIMIT 2"),
                    {"p": digits + "%"},
                )
            ).all()
        if len(rows) != 1:
            problem = "no memory has" if not rows else "several memories have"
            raise InputError(
                f"{problem} an id starting with {value!r}.",
                hint="Give more characters or the full id.",
            )
        found = rows[0][0]
        return found if isinstance(found, uuid.UUID) else uuid.UUID(str(found))

    async def delete(self, ids: Sequence[uuid.UUID]) -> int:
        deleted = 0
        async with self._write() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                result = await conn.execute(delete(M).where(M.c.id.in_(chunk)))
                deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        if deleted:
            self._db_model = None
            self._claimed = None
        return deleted

    async def table_counts(self) -> dict[str, int]:
        from carrier_cli.memory.schema import MEMORY_TABLES

        counts: dict[str, int] = {}
        async with self._read() as conn:
            for table in MEMORY_TABLES:
                counts[table] = int(
                    (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() or 0
                )
        return counts

    async def vector_indexes(self) -> dict[str, dict[str, Any]] | None:
        """PostgreSQL: the vectors in the main index and in the bulk segment, and whether
        each HNSW index exists (missing: a bulk load under way or stopped, rebuilt by the
        next write; or more than 2000 dimensions). None on SQLite."""
        if self.backend != "postgresql":
            return None
        async with self._read() as conn:
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

    async def stats(self, agent_id: uuid.UUID | None = None) -> dict[str, Any]:
        stmt = select(M.c.kind, func.count(), func.min(M.c.created_at), func.max(M.c.created_at))
        if agent_id is not None:
            stmt = stmt.where(M.c.agent_id == agent_id)
        stmt = stmt.group_by(M.c.kind)
        async with self._read() as conn:
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
        stored = await self.stored_model(refresh=True)
        kinds = {str(r[0]): int(r[1]) for r in rows}
        return {
            "total": sum(kinds.values()),
            "by_kind": kinds,
            "rooms": room_count,
            "without_vectors": without_vectors,
            "not_unique": duplicates,
            "oldest": min((r[2] for r in rows), default=None),
            "newest": max((r[3] for r in rows), default=None),
            "embedding_model": stored[0] if stored else None,
            "embedding_dimension": stored[1] if stored else None,
            "embedder": self.embedder.model_id,
        }

    # ------------------------------------------------------------------ re-embedding
    async def reembed(
        self, *, batch_size: int = 256, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Re-embed every memory with the current embedder (after a model change)."""
        model = self.embedder.model_id
        async with self._read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(M))).scalar() or 0)
        if self.backend == "postgresql":
            async with self._write() as conn:
                await _drop_vector_indexes(conn)
                await conn.execute(
                    text("ALTER TABLE memories ALTER COLUMN embedding TYPE vector USING NULL")
                )
                await conn.execute(update(M).values(embedding_model=None, vector_segment=None))
            await self.engine.dispose()
            self._pg_vectors_ready = False
        else:
            async with self._write() as conn:
                await conn.execute(update(M).values(embedding=None, embedding_model=None))
        self._db_model = None
        self._claimed = None
        self._vector_cache.clear()
        async with self.bulk_load():  # PostgreSQL: the index is built once, at the end
            if self._bulk:  # its updates are not inserts: say the load has begun
                await self._start_bulk()
            done = await self._reembed_rows(model, batch_size, total, progress)
        if self._index is not None:
            self._index.invalidate()
        return done

    async def _reembed_rows(
        self,
        model: str,
        batch_size: int,
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        done = 0
        last_id: uuid.UUID | None = None
        while True:
            stmt = select(M.c.id, M.c.content).order_by(M.c.id).limit(batch_size)
            if last_id is not None:
                stmt = stmt.where(M.c.id > last_id)
            async with self._read() as conn:
                rows = (await conn.execute(stmt)).all()
            if not rows:
                break
            last_id = rows[-1][0]
            vectors = await self.embed_texts([str((r[1] or {}).get("text", "")) for r in rows])
            first = next((v for v in vectors if v is not None), None)
            if first is not None:
                await self._check_model(model, len(first), writing=True)
            changes = [
                {"mid": memory_id, "vec": vector}
                for (memory_id, _), vector in zip(rows, vectors, strict=True)
                if vector is not None
            ]
            if changes:
                change = (
                    update(M)
                    .where(M.c.id == bindparam("mid"))
                    .values(
                        embedding=bindparam("vec", type_=EmbeddingVector()), embedding_model=model
                    )
                )
                async with self._write() as conn:
                    await conn.execute(change, changes)
            done += len(rows)
            if progress is not None:
                progress(done, total)
        return done


# ---------------------------------------------------------------------- helpers


@asynccontextmanager
async def _unless(failed: bool) -> AsyncIterator[None]:
    """A cleanup step: its errors propagate normally, but are only logged when the work
    it cleans up after has failed already (that failure is the one to report)."""
    try:
        yield
    except Exception as exc:
        if not failed:
            raise
        log.debug("cleanup after a failure failed too: %s: %s", type(exc).__name__, exc)


@asynccontextmanager
async def _closing_quietly(connecting: Any) -> AsyncIterator[AsyncConnection]:
    """`async with engine.connect()` whose close cannot replace an error in flight."""
    conn = await connecting.start()
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.close()
        raise
    await conn.close()


async def _connect_check(engine: AsyncEngine, url: str, schema_state: Any) -> Any:
    from carrier_cli.memory.failures import storage_failure

    try:
        return await schema_state(engine)
    except (InputError, RuntimeFailure):
        raise
    except Exception as exc:
        failure = storage_failure(exc, url)  # a damaged, read-only or full SQLite file...
        if failure is not None:
            raise failure from exc
        name = type(exc).__name__
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        if backend_of(url) == "sqlite":  # host and port advice means nothing for a file
            hint = (
                "Check the path in DATABASE_URL (or database_url in config.yaml) and that "
                "the file is Carrier's database; `carrier db check` inspects it."
            )
        else:
            hint = (
                "Check DATABASE_URL (host, port, user, password, database name) and that "
                "the server is running; unset it to use the built-in SQLite database."
            )
        raise RuntimeFailure(
            f"Cannot open the database {mask_url(url)}: {name}: {message}.", hint=hint
        ) from exc


async def _drop_vector_indexes(conn: AsyncConnection) -> None:
    await conn.execute(text(f"DROP INDEX IF EXISTS {MAIN_VECTOR_INDEX}"))
    await conn.execute(text(f"DROP INDEX IF EXISTS {BULK_VECTOR_INDEX}"))


async def _create_vector_indexes(conn: AsyncConnection) -> None:
    """Both HNSW indexes, where missing (an empty segment's index costs nothing)."""
    await conn.execute(text(hnsw_index_ddl(bulk=False)))
    await conn.execute(text(hnsw_index_ddl(bulk=True)))


@functools.cache
def _pg_search_statements(full: bool, given: frozenset[str], unique_only: bool) -> tuple[Any, Any]:
    """The top-k statements for the main index and the bulk segment, for one combination
    of filters, built once: building and keying them took about a millisecond a search."""
    distance = M.c.embedding.op("<=>", return_type=Float())(bindparam("q", type_=EmbeddingVector()))
    columns = _columns(False) if full else [M.c.id]
    conditions: list[Any] = [M.c.embedding.is_not(None)]
    for name in ("agent_id", "room_id", "entity_id"):
        if name in given:
            conditions.append(M.c[name] == bindparam(name))
    if "kinds" in given:
        conditions.append(M.c.kind.in_(bindparam("kinds", expanding=True)))
    if "since" in given:
        conditions.append(M.c.created_at >= bindparam("since", type_=M.c.created_at.type))
    if "until" in given:
        conditions.append(M.c.created_at <= bindparam("until", type_=M.c.created_at.type))
    if unique_only:
        conditions.append(M.c.unique.is_(True))

    def top(segment: Any) -> Any:
        arm = select(*columns, distance.label("distance")).where(*conditions, segment)
        return arm.order_by(distance).limit(bindparam("k", type_=Integer()))

    return (
        top(M.c.vector_segment.is_(None)),
        # A literal, not a parameter: only then does the planner use the partial index.
        top(M.c.vector_segment == literal_column(str(BULK_SEGMENT))),
    )


def _columns(with_vector: bool) -> list[Any]:
    cols = [
        M.c.id,
        M.c.agent_id,
        M.c.room_id,
        M.c.entity_id,
        M.c.kind,
        M.c.content,
        M.c.created_at,
        M.c.embedding_model,
        M.c.unique,
        M.c.metadata,
    ]
    if with_vector:
        cols.append(M.c.embedding)
    return cols


def _in(column: Any, values: Sequence[Any]) -> Any:
    """`column IN (...)`, or `column = ?` for one value: the hot path mostly asks for one
    id, hash or kind, and a plain comparison skips SQLAlchemy's IN expansion per call."""
    return column == values[0] if len(values) == 1 else column.in_(values)


def _filtered(stmt: Any, filters: IndexFilters) -> Any:
    if filters.agent_id is not None:
        stmt = stmt.where(M.c.agent_id == filters.agent_id)
    if filters.room_id is not None:
        stmt = stmt.where(M.c.room_id == filters.room_id)
    if filters.entity_id is not None:
        stmt = stmt.where(M.c.entity_id == filters.entity_id)
    if filters.kinds:
        stmt = stmt.where(_in(M.c.kind, list(filters.kinds)))
    if filters.since is not None:
        stmt = stmt.where(M.c.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(M.c.created_at <= filters.until)
    if filters.unique_only:
        stmt = stmt.where(M.c.unique.is_(True))
    return stmt


def _room_times(memories: Sequence[Memory]) -> dict[uuid.UUID, datetime]:
    """The newest memory time per room (for rooms.last_active_at)."""
    times: dict[uuid.UUID, datetime] = {}
    for m in memories:
        if m.room_id is not None and m.created_at is not None:
            times[m.room_id] = max(times.get(m.room_id, m.created_at), m.created_at)
    return times


def _row(memory: Memory, vector: np.ndarray | None, segment: int | None) -> dict[str, Any]:
    return {
        "id": memory.id,
        "agent_id": memory.agent_id,
        "room_id": memory.room_id,
        "entity_id": memory.entity_id,
        "kind": str(MemoryKind(memory.kind)),
        "content": memory.content,
        "content_hash": content_hash(memory.text),
        "created_at": memory.created_at,
        "embedding": vector,
        "embedding_model": memory.embedding_model if vector is not None else None,
        "unique": memory.unique,
        "metadata": memory.metadata or {},
        "vector_segment": segment if vector is not None else None,
    }


def _memory(row: Any) -> Memory:
    mapping = row._mapping
    vector = mapping.get("embedding")
    return Memory(
        id=row.id,
        agent_id=row.agent_id,
        room_id=row.room_id,
        entity_id=row.entity_id,
        kind=MemoryKind(row.kind),
        content=dict(row.content or {}),
        created_at=row.created_at,
        unique=bool(row.unique),
        metadata=dict(row.metadata or {}),
        embedding=np.asarray(vector).tolist() if vector is not None else None,
        embedding_model=row.embedding_model,
    )


def _room(row: Any) -> Room:
    return Room(
        id=row.id,
        agent_id=row.agent_id,
        source=row.source,
        external_id=row.external_id,
        name=row.name,
        metadata=dict(row.metadata or {}),
    )
