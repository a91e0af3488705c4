"""Memories, rooms and entities as table rows: the SQLAlchemy mapping both backends share.

Everything here is dialect-neutral (the same statements run on SQLite and PostgreSQL);
what differs between the databases lives in `memory.sqlite` and `memory.postgres`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from carrier_cli.memory.schema import MEMORIES
from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room

if TYPE_CHECKING:
    from sqlalchemy import Connection

# Work done inside insert_memories' transaction, given the memories it inserted (the
# webhooks' outbox rows).
InsertExtra = Callable[["Connection", Sequence[Memory]], None]

CHUNK = 500  # ids per IN (...) clause
QUICK_ROWS = 64  # reads of up to this many rows may run inline (MemoryBackend.quick_read)


M = MEMORIES


@dataclass
class IndexFilters:
    """What a search, list or count is restricted to (None: no restriction)."""

    agent_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    entity_id: uuid.UUID | None = None
    kinds: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    unique_only: bool = False


def content_hash(text_value: str) -> str:
    return hashlib.sha256(text_value.encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def unit(vector: Any) -> np.ndarray | None:
    """The vector scaled to length 1, None for a zero, NaN or infinite one."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return array / norm


def unit_rows(array: np.ndarray) -> list[np.ndarray | None]:
    """`unit` of each row of a 2-D float32 array, the same values to the bit (the norm is
    `sqrt(row . row)`, as np.linalg.norm computes it for one vector), without its
    per-call conversions: ~1.5 us a row instead of ~7 (an embedded batch, at ingest)."""
    array = np.asarray(array, dtype=np.float32)
    # Each row's dot with itself by one batched matmul of (n, 1, d) @ (n, d, 1): numpy
    # hands each 1x1 product to the same float32 dot as `row.dot(row)` (its BLAS sdot,
    # summed in double), so the norms are the same to the bit (tests/memory/test_unit_rows.py
    # checks that on random data). One call instead of one per row: 0.97 -> 0.02 ms for
    # 1,000 rows, and no GIL hand-off per row (each `row.dot` releases the GIL around
    # BLAS, and on a busy ingest every re-acquire waited for the embedder or the writer
    # thread): Carrier's CPU a memory in the ingest bench 90.5 -> 82.1 us (median of 4,
    # measured with the norms vectorised in place of the per-row loop).
    norms = np.sqrt(np.matmul(array[:, None, :], array[:, :, None]).reshape(len(array)))
    good = (norms != 0.0) & np.isfinite(norms)
    # One division for the batch (float32 by float32, as `row / norm` was, element for
    # element) and rows as views of it: 2.3 -> ~1 us a row.
    scaled = array / np.where(good, norms, np.float32(1.0))[:, None]
    return [row if ok else None for row, ok in zip(scaled, good.tolist(), strict=True)]


def columns(with_vector: bool) -> list[Any]:
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


def in_(column: Any, values: Sequence[Any]) -> Any:
    """`column IN (...)`, or `column = ?` for one value: the hot path mostly asks for one
    id, hash or kind, and a plain comparison skips SQLAlchemy's IN expansion per call."""
    return column == values[0] if len(values) == 1 else column.in_(values)


def filtered(stmt: Any, filters: IndexFilters) -> Any:
    if filters.agent_id is not None:
        stmt = stmt.where(M.c.agent_id == filters.agent_id)
    if filters.room_id is not None:
        stmt = stmt.where(M.c.room_id == filters.room_id)
    if filters.entity_id is not None:
        stmt = stmt.where(M.c.entity_id == filters.entity_id)
    if filters.kinds:
        stmt = stmt.where(in_(M.c.kind, list(filters.kinds)))
    if filters.since is not None:
        stmt = stmt.where(M.c.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(M.c.created_at <= filters.until)
    if filters.unique_only:
        stmt = stmt.where(M.c.unique.is_(True))
    return stmt


def room_times(memories: Sequence[Memory]) -> dict[uuid.UUID, datetime]:
    """The newest memory time per room (for rooms.last_active_at)."""
    times: dict[uuid.UUID, datetime] = {}
    for m in memories:
        if m.room_id is not None and m.created_at is not None:
            times[m.room_id] = max(times.get(m.room_id, m.created_at), m.created_at)
    return times


def memory_row(
    memory: Memory, vector: np.ndarray | None, digest: str | None = None
) -> dict[str, Any]:
    """The `memories` row of a memory; `vector_segment` is the backend's to set. `digest`:
    content_hash(memory.text), when the caller has computed it already."""
    return {
        "id": memory.id,
        "agent_id": memory.agent_id,
        "room_id": memory.room_id,
        "entity_id": memory.entity_id,
        "kind": str(kind if type(kind := memory.kind) is MemoryKind else MemoryKind(kind)),
        "content": memory.content,
        "content_hash": content_hash(memory.text) if digest is None else digest,
        "created_at": memory.created_at,
        "embedding": vector,
        "embedding_model": memory.embedding_model if vector is not None else None,
        "unique": memory.unique,
        "metadata": memory.metadata or {},
        "vector_segment": None,
    }


KIND_OF = {kind.value: kind for kind in MemoryKind}  # a stored kind's text -> the enum


def to_memory(row: Any) -> Memory:
    # One mapping, read by key, and the kind from a dict: half the time of attribute
    # access and `MemoryKind(...)` per field (4.5 against 8.5 us a row, and every turn
    # reads its room's recent messages: 32 rows).
    mapping = row._mapping
    vector = mapping.get("embedding")
    kind = mapping["kind"]
    content = mapping["content"]
    metadata = mapping["metadata"]
    return Memory(
        id=mapping["id"],
        agent_id=mapping["agent_id"],
        room_id=mapping["room_id"],
        entity_id=mapping["entity_id"],
        kind=KIND_OF.get(kind) or MemoryKind(kind),
        content=dict(content) if content else {},
        created_at=mapping["created_at"],
        unique=bool(mapping["unique"]),
        metadata=dict(metadata) if metadata else {},
        embedding=np.asarray(vector).tolist() if vector is not None else None,
        embedding_model=mapping["embedding_model"],
    )


def to_room(row: Any) -> Room:
    return Room(
        id=row.id,
        agent_id=row.agent_id,
        source=row.source,
        external_id=row.external_id,
        name=row.name,
        metadata=dict(row.metadata or {}),
        last_active_at=getattr(row, "last_active_at", None),
    )


def to_entity(row: Any) -> Entity:
    return Entity(
        id=row.id,
        names=list(row.names or []),
        platform=row.platform,
        external_id=row.external_id,
        metadata=dict(row.metadata or {}),
    )
