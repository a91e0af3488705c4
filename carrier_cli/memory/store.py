"""MemoryStore: the one way the runtime, the clients and the CLI reach long-term memory.

The same class serves SQLite (default, zero set-up) and PostgreSQL + pgvector (chosen by
the URL, in `memory.backends`). It owns what both share: embedding (and its cache), the
model/dimension check, dedupe, mapping memories to rows, and the intake cache; the
database work is its backend's (`memory.backend.MemoryBackend`). Everything outside
`memory/` sees the dataclasses in `memory.types` only.

Vectors are stored unit-length, with the id of the model that made them. A database holds
vectors of one model at a time: adding or searching with another model is refused with a
message that names both and points at `carrier memory reembed`, instead of silently
comparing incompatible vectors (ElizaOS's "384 vs 1536" failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory import heap
from carrier_cli.memory.embedding import EmbeddingModelMismatch, Vectors
from carrier_cli.memory.intake import Intake
from carrier_cli.memory.rows import IndexFilters, content_hash, unit, utcnow
from carrier_cli.memory.types import (
    Arrival,
    Entity,
    Memory,
    MemoryKind,
    Recorded,
    Room,
    SearchHit,
    keep_vector,
    stable_id,
)
from carrier_cli.memory.urls import mask_url, normalise_url
from carrier_cli.memory.usage_records import UsageRecords

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.config import Settings
    from carrier_cli.llm.base import Embedder
    from carrier_cli.memory.async_engine import AsyncEngine
    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.failures import StorageFailure

DEDUPE_THRESHOLD = 0.95

# Kept importable from here: callers hash texts the way the store does.
__all__ = ["DEDUPE_THRESHOLD", "EmbeddingModelMismatch", "MemoryStore", "content_hash"]


class OutboxHook(Protocol):
    """What the store asks of `store.outbox` (webhooks.policy.OutboxPolicy)."""

    def rows_for_messages(
        self, backend: MemoryBackend, conn: Connection, memories: Sequence[Memory]
    ) -> None: ...

    def written(self) -> None: ...


class MemoryStore(UsageRecords):
    """Open with `await MemoryStore.open(url)` or `from_settings`; close with `close()`."""

    def __init__(
        self, backend: MemoryBackend, embedder: Embedder, *, owns_embedder: bool = False
    ) -> None:
        self._backend = backend
        # The embedder this store made (open/from_settings without one) is closed with it;
        # one passed in is the caller's, who may share it between stores.
        self._owned_embedder: Embedder | None = embedder if owns_embedder else None
        self.url = backend.url
        self.backend = backend.name  # "sqlite" or "postgresql", for reports
        self._vectors = Vectors(backend, embedder)
        self._intake = Intake(backend)
        # Called with the seconds the backend's part of each search took (the metrics'
        # histogram, when they are on).
        self.search_observers: list[Callable[[float], None]] = []
        # Webhooks' outbox (webhooks.policy.OutboxPolicy), set by the webhook service when
        # webhooks are configured: its rows for stored messages are written in the same
        # transaction as the messages.
        self.outbox: OutboxHook | None = None

    @property
    def embedder(self) -> Embedder:
        return self._vectors.embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        self._vectors.embedder = embedder

    @property
    def engine(self) -> AsyncEngine:
        return self._backend.engine

    @property
    def sizes_bulk_loads(self) -> bool:
        """Whether `bulk_load(rows=...)` uses the count (PostgreSQL plans by it)."""
        return self._backend.sizes_bulk_loads

    @property
    def locks_rooms(self) -> bool:
        """Whether other processes may run turns on this database (PostgreSQL), so a turn
        must also hold its room through `room_lock`."""
        return self._backend.locks_rooms

    def room_lock(
        self, room_id: uuid.UUID, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold the room against other processes' turns for the body (a no-op on SQLite);
        `on_wait` is called before waiting (runtime.rooms gives back a client's slot)."""
        return self._backend.room_lock(room_id, on_wait)

    # ------------------------------------------------------------------ opening
    @classmethod
    async def open(
        cls, url: str | None = None, *, embedder: Embedder | None = None, create: bool = True
    ) -> MemoryStore:
        """An empty database is initialised (create=True); an older schema is never
        upgraded implicitly: that is `carrier db upgrade`, run on purpose."""
        if embedder is not None:
            return await cls._open(url, embedder, create, owns_embedder=False)
        from carrier_cli.llm.embeddings import LocalEmbedder

        return await cls._open(url, LocalEmbedder(), create, owns_embedder=True)

    @classmethod
    async def from_settings(
        cls, settings: Settings, *, embedder: Embedder | None = None, create: bool = True
    ) -> MemoryStore:
        if embedder is not None:
            return await cls._open(settings.database_url, embedder, create, owns_embedder=False)
        from carrier_cli.llm.embeddings import create_embedder

        made = create_embedder(settings)
        return await cls._open(settings.database_url, made, create, owns_embedder=True)

    @classmethod
    async def _open(
        cls, url: str | None, embedder: Embedder, create: bool, *, owns_embedder: bool
    ) -> MemoryStore:
        from carrier_cli.memory.backends import open_database

        try:
            backend = await open_database(normalise_url(url), create=create)
        except BaseException:
            if owns_embedder:
                await _close_embedder(embedder)
            raise
        return cls(backend, embedder, owns_embedder=owns_embedder)

    async def close(self) -> None:
        try:
            await self._backend.close()
        finally:
            owned, self._owned_embedder = self._owned_embedder, None
            if owned is not None:
                await _close_embedder(owned)

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def explain(self, exc: BaseException) -> StorageFailure | None:
        """What `exc` means for the operator as a storage failure, or None when it is not
        one. Statements' errors are StorageFailures already (the engines' hook); a few
        driver errors get past the hook (a rollback or a connection lost between
        statements), and this names those too, with this store's URL."""
        return self._backend.storage_failure(exc, self.url)

    # ------------------------------------------------------------------ agents, entities, rooms
    async def ensure_agent(self, name: str, agent_id: uuid.UUID | None = None) -> uuid.UUID:
        agent_id = agent_id or stable_id("character", name)
        await self._backend.ensure_agent(agent_id, name)
        return agent_id

    async def ensure_entity(
        self, platform: str, external_id: str, name: str, metadata: dict[str, Any] | None = None
    ) -> Entity:
        entity_id = stable_id(platform, "entity", external_id)
        work = self._backend.entity_work(entity_id, platform, external_id, name, metadata)
        return await self._backend.run_write(work)

    async def get_entity(self, entity_id: uuid.UUID) -> Entity | None:
        return await self._backend.get_entity(entity_id)

    async def ensure_room(
        self, agent_id: uuid.UUID, source: str, external_id: str, name: str | None = None
    ) -> Room:
        room_id = stable_id(source, "room", external_id, agent_id)
        work = self._backend.room_work(room_id, agent_id, source, external_id, name)
        return await self._backend.run_write(work)

    async def ensure_participant(self, room_id: uuid.UUID, entity_id: uuid.UUID) -> None:
        await self._backend.run_write(self._backend.participant_work(room_id, entity_id))

    async def record_message(
        self, agent_id: uuid.UUID, arrival: Arrival, *, embed: bool
    ) -> Recorded:
        """Store an incoming message with its room, sender and participation: what the
        runtime does with every message. Rooms, senders (with the name they had) and
        participations already recorded are remembered (memory.intake: a bounded LRU),
        and whatever is missing is written in one transaction. The message itself is
        `add(..., dedupe=True)`ed: a replayed id returns the row stored the first time,
        and `seen_before` says so.

        An embedding that waits (a remote embedder's request, or the local model's first
        load, ~1 s, in a worker thread) starts before the room and sender rows are written,
        so the two overlap; the vector lands in the embedding cache, where `add` finds it.
        A local embedding of a chat message runs inline (~0.3 ms): nothing to overlap."""
        text = arrival.content.get("text")
        early: asyncio.Future[Any] | None = None
        if embed and isinstance(text, str) and text.strip():
            inline: Callable[[Sequence[str]], bool] | None = getattr(
                self.embedder, "embeds_inline", None
            )
            if inline is None or not inline([text]):
                early = asyncio.ensure_future(self._vectors.embed_texts([text]))
        try:
            room, entity = await self._intake.ensure(agent_id, arrival)
            if early is not None:
                await early  # its failure is the message's, as it would be in add()
        finally:
            if early is not None and not early.done():
                early.cancel()
                with contextlib.suppress(BaseException):
                    await early
        memory = Memory(
            agent_id=agent_id,
            content=arrival.content,
            kind=MemoryKind.MESSAGE,
            room_id=room.id,
            entity_id=entity.id,
            id=arrival.memory_id,
            metadata=arrival.metadata,
        )
        stored = await self.add(memory, embed=embed, dedupe=True)
        # add() is idempotent on the id and hands back the row already stored for a
        # replayed id (a different object), saving a separate existence query.
        return Recorded(room=room, entity=entity, memory=stored, seen_before=stored is not memory)

    async def participants(self, room_id: uuid.UUID) -> list[Entity]:
        return await self._backend.participants(room_id)

    async def get_room(self, room_id: uuid.UUID) -> Room | None:
        return await self._backend.get_room(room_id)

    async def find_room(self, agent_id: uuid.UUID, source: str, external_id: str) -> Room | None:
        return await self.get_room(stable_id(source, "room", external_id, agent_id))

    async def list_rooms(self, agent_id: uuid.UUID, source: str | None = None) -> list[Room]:
        """Newest activity first (what `chat --continue` wants)."""
        return await self._backend.list_rooms(agent_id, source)

    async def add_relationship(
        self,
        agent_id: uuid.UUID,
        entity_a: uuid.UUID,
        entity_b: uuid.UUID,
        kind: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        rel_id = stable_id("relationship", agent_id, entity_a, entity_b, kind)
        await self._backend.add_relationship(rel_id, agent_id, entity_a, entity_b, kind, metadata)

    async def relationships(
        self, agent_id: uuid.UUID, entity_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        return await self._backend.relationships(agent_id, entity_id)

    # ------------------------------------------------------------------ cache
    async def cache_get(self, key: str) -> Any | None:
        return await self._backend.cache_get(key)

    async def cache_set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._backend.cache_set(key, value, ttl)

    async def cache_set_many(self, entries: Sequence[tuple[str, Any, float | None]]) -> None:
        """Several `cache_set`s, (key, value, ttl) each, in one transaction: all are
        written or none (a later entry for the same key wins)."""
        # One entry a key: PostgreSQL refuses a multi-row upsert touching a row twice.
        last = {key: (key, value, ttl) for key, value, ttl in entries}
        await self._backend.cache_set_many(list(last.values()))

    async def cache_delete(self, key: str) -> None:
        await self._backend.cache_delete(key)

    # ------------------------------------------------------------------ embedding model
    async def stored_model(self, *, refresh: bool = False) -> tuple[str, int] | None:
        """(model id, dimension) of the vectors in the database, None when there are none."""
        return await self._vectors.stored_model(refresh=refresh)

    async def stored_models(self) -> dict[str, int]:
        """Every model with vectors in the database and how many (normally one)."""
        return await self._backend.stored_models()

    def bulk_load(self, rows: int | None = None) -> AbstractAsyncContextManager[None]:
        """For large loads (ingest, import, reembed): an async context manager around the
        load. `rows` is how many memories the load will add (None: unknown or most of the
        table). On PostgreSQL it keeps HNSW maintenance out of the inserts, which is what
        limits a load there, by the cheapest of three plans (see PostgresBackend.bulk_load);
        searches during a load stay correct. On either backend the heap alive at its
        start is frozen for the load (memory.heap: the collector does not walk it again
        and again)."""
        return _FrozenLoad(self._backend.bulk_load(rows, self._fresh_model))

    async def _fresh_model(self) -> tuple[str, int] | None:
        return await self.stored_model(refresh=True)

    # ------------------------------------------------------------------ embedding
    async def embed_texts(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Unit vectors for texts, None for empty ones. Each distinct text is embedded once:
        first an in-process cache, then vectors already stored for the same text (by content
        hash), and only then the embedder, in batches."""
        return await self._vectors.embed_texts(texts)

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
        if self._backend.reports_inserted:
            # The backend reports which rows its insert took, so no existence query
            # first: an id already stored is skipped by the insert and read back
            # afterwards (a replay; rare), at the cost of having embedded its text for
            # nothing.
            unique: dict[uuid.UUID, Memory] = {}
            for memory in memories:
                unique.setdefault(memory.id, memory)
            try:
                inserted = await self._insert_new(list(unique.values()), embed=embed, dedupe=dedupe)
            except EmbeddingModelMismatch:
                inserted = None  # maybe all stored already: decide as below
            if inserted is not None:
                if len(inserted) == len(unique) == len(memories):
                    return list(memories)  # all new, none repeated: the usual bulk batch
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
        """Insert (ids already stored are skipped); returns the ids inserted when the
        backend reports them."""
        model = self.embedder.model_id
        now = utcnow()
        # Each text and its content hash once, for the embedding cache and the row both (a
        # hash in each cost 0.6 us a memory more, measured at ingest).
        texts = [memory.text for memory in memories]
        digests = [content_hash(text) for text in texts]
        vectors: list[np.ndarray | None] = [None] * len(memories)
        to_embed: list[int] = []
        given: set[tuple[str, int]] = set()
        for i, memory in enumerate(memories):
            if memory.created_at is None:
                memory.created_at = now + timedelta(microseconds=i)
            elif memory.created_at.tzinfo is None:
                memory.created_at = memory.created_at.replace(tzinfo=UTC)
            if type(memory.kind) is not MemoryKind:  # the enum call: 0.5 us a memory
                memory.kind = MemoryKind(memory.kind)
            if memory.embedding is not None and len(memory.embedding) > 0:
                vector = unit(memory.embedding)
                vectors[i] = vector
                if vector is not None:
                    memory.embedding_model = memory.embedding_model or model
                    given.add((memory.embedding_model, len(vector)))
            elif embed:
                to_embed.append(i)
        for vmodel, dim in sorted(given):
            await self._vectors.check_model(vmodel, dim, writing=True)
        if to_embed:
            embedded = await self._vectors.embed_texts(
                [texts[i] for i in to_embed], [digests[i] for i in to_embed]
            )
            first = next((v for v in embedded if v is not None), None)
            if first is not None:
                if len(first) != self.embedder.dimension:
                    raise RuntimeFailure(
                        f"Embedder `{model}` returned {len(first)}-dimensional vectors but "
                        f"declares {self.embedder.dimension}.",
                        hint="Check embedding_dimensions for this model.",
                    )
                await self._vectors.check_model(model, len(first), writing=True)
            for i, vector in zip(to_embed, embedded, strict=True):
                vectors[i] = vector
                memories[i].embedding_model = model if vector is not None else None
        for memory, vector in zip(memories, vectors, strict=True):
            if vector is None:
                memory.embedding = None
                memory.embedding_model = None
            else:
                # The list only if someone reads it (memory.types._Embedding): 10.7 us a
                # memory that an ingest or import never used.
                keep_vector(memory, vector)
        if dedupe:
            await self._mark_duplicates(memories, vectors)
        hook = self.outbox
        if hook is None:
            return await self._backend.insert_memories(memories, vectors, digests)
        backend = self._backend

        def extra(conn: Connection, new: Sequence[Memory]) -> None:
            hook.rows_for_messages(backend, conn, new)

        inserted = await backend.insert_memories(memories, vectors, digests, extra=extra)
        hook.written()
        return inserted

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
        stored = await self._vectors.model_or_claimed()
        if stored is None:
            return False
        filters = IndexFilters(agent_id=agent_id, room_id=room_id)
        return await self._backend.has_near(vector, stored[0], filters, threshold=DEDUPE_THRESHOLD)

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
            vector = unit(query)
        if vector is None:
            return []
        if not await self._vectors.check_model(self.embedder.model_id, len(vector), writing=False):
            return []  # no vectors stored yet
        filters = IndexFilters(
            agent_id=agent_id,
            room_id=room_id,
            entity_id=entity_id,
            kinds=_kinds(kinds),
            since=since,
            until=until,
            unique_only=unique_only,
        )
        stored = await self.stored_model()
        if stored is None:
            return []
        began = perf_counter()
        hits = await self._backend.search(
            vector, stored[0], k=k, threshold=threshold, filters=filters
        )
        if self.search_observers:
            seconds = perf_counter() - began
            for observe in self.search_observers:
                observe(seconds)
        return hits

    async def get(self, memory_id: uuid.UUID, *, with_vector: bool = True) -> Memory | None:
        found = await self._get_many([memory_id], with_vector=with_vector)
        return found.get(memory_id)

    async def _get_many(
        self, ids: Sequence[uuid.UUID], *, with_vector: bool = False
    ) -> dict[uuid.UUID, Memory]:
        return await self._backend.get_many(ids, with_vector=with_vector)

    async def recent(
        self,
        room_id: uuid.UUID,
        n: int = 32,
        *,
        kinds: Sequence[MemoryKind | str] | None = (MemoryKind.MESSAGE,),
    ) -> list[Memory]:
        """The last n memories of a room, oldest first (the order a prompt wants)."""
        return await self._backend.recent(room_id, n, _kinds(kinds))

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
        after: Memory | None = None,
    ) -> list[Memory]:
        """Newest first by default. `after`: the page that follows this memory in that
        order (keyset pagination: a page stays right while new memories arrive, which an
        offset does not)."""
        filters = IndexFilters(
            agent_id=agent_id, room_id=room_id, entity_id=entity_id, kinds=_kinds(kinds)
        )
        return await self._backend.list_memories(
            filters,
            limit=limit,
            offset=offset,
            with_vectors=with_vectors,
            oldest_first=oldest_first,
            after=(after.created_at, after.id) if after and after.created_at else None,
        )

    async def count(
        self,
        *,
        agent_id: uuid.UUID | None = None,
        kinds: Sequence[MemoryKind | str] | None = None,
        room_id: uuid.UUID | None = None,
    ) -> int:
        filters = IndexFilters(agent_id=agent_id, room_id=room_id, kinds=_kinds(kinds))
        return await self._backend.count(filters)

    async def resolve_id(self, value: str) -> uuid.UUID:
        """A full memory id, or at least 8 of its first or last hex digits, unambiguous.
        The last: memory ids are time-ordered UUIDv7s (memory.ids), whose first 8 digits
        are the same for every memory made in the same 65 s, so a listing shows the last
        8 (memory.ids.short); the first: what was shown before, and an id's start."""
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
        digits = value.replace("-", "").lower()
        if len(digits) < 8 or any(c not in "0123456789abcdef" for c in digits):
            raise InputError(
                f"{value!r} is not a memory id.",
                hint="Give the full id, or at least its first or last 8 characters "
                "(`carrier memory list` shows the last 8).",
            )
        found = await self._backend.ids_matching(digits)
        if len(found) != 1:
            problem = "no memory has" if not found else "several memories have"
            raise InputError(
                f"{problem} an id starting or ending with {value!r}.",
                hint="Give more characters or the full id.",
            )
        return found[0] if isinstance(found[0], uuid.UUID) else uuid.UUID(str(found[0]))

    async def delete(self, ids: Sequence[uuid.UUID]) -> int:
        deleted = await self._backend.delete(ids)
        if deleted:
            self._vectors.forget_model()
        return deleted

    async def ping(self) -> None:
        """One cheap round trip to the database (readiness probes); raises if it fails."""
        await self._backend.ping()

    async def table_counts(self) -> dict[str, int]:
        from carrier_cli.memory.schema import MEMORY_TABLES

        return await self._backend.table_counts(MEMORY_TABLES)

    async def vector_indexes(self) -> dict[str, dict[str, Any]] | None:
        """PostgreSQL: the vectors in the main index and in the bulk segment, and whether
        each HNSW index exists (missing: a bulk load under way or stopped, rebuilt by the
        next write; or more than 2000 dimensions). None on SQLite."""
        return await self._backend.vector_indexes()

    async def stats(self, agent_id: uuid.UUID | None = None) -> dict[str, Any]:
        counts = await self._backend.stats(agent_id)
        stored = await self.stored_model(refresh=True)
        return {
            **counts,
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
        total = await self._backend.count(IndexFilters())
        await self._backend.clear_vectors()
        self._vectors.forget_model()
        self._vectors.cache.clear()
        async with self.bulk_load():  # PostgreSQL: the index is built once, at the end
            await self._backend.begin_bulk()  # its updates are not inserts: say it began
            done = await self._vectors.reembed_rows(model, batch_size, total, progress)
        self._backend.vectors_changed()
        return done


class _FrozenLoad(AbstractAsyncContextManager[None]):
    """The backend's bulk load, with the heap frozen around it (memory.heap), unfrozen
    on the way out whether the load ends or fails."""

    __slots__ = ("inner",)

    def __init__(self, inner: AbstractAsyncContextManager[None]) -> None:
        self.inner = inner

    async def __aenter__(self) -> None:
        heap.enter()
        try:
            await self.inner.__aenter__()
        except BaseException:
            heap.leave()
            raise

    async def __aexit__(self, *exc: Any) -> bool | None:
        try:
            return await self.inner.__aexit__(*exc)
        finally:
            heap.leave()


def _kinds(kinds: Sequence[MemoryKind | str] | None) -> list[str] | None:
    return [str(MemoryKind(k)) for k in kinds] if kinds else None


async def _close_embedder(embedder: Embedder) -> None:
    """A remote embedder's HTTP client (an aiohttp session and its connections); the local
    one has nothing to close."""
    close = getattr(embedder, "aclose", None)
    if close is not None:
        await close()
