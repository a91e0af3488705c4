"""Export and import memories as JSON Lines: a lossless, backend-neutral round trip.

Each line is one record with a `type`: `agent`, `entity`, `room`, `participant` or
`memory`, in an order that import can apply line by line. Ids, kinds, rooms, timestamps,
content and metadata are kept exactly; vectors only with `with_vectors` (they are large and
tied to one model). Import never duplicates: every record is keyed by its id, so running
it twice changes nothing. Vectors from a model other than the store's are dropped and the
text is embedded again, so an export can move between embedding models too.

Import checks the whole input before it writes anything: a bad line anywhere (not JSON, a
bad id, a vector of the wrong dimension, a NaN or infinite component) is refused with its
line number and the database is left as it was, never half-imported. A memory whose id is
already used by a memory with different content (earlier in the file, or stored) is a
conflict: the first one is kept (import never overwrites), and the report counts the
conflicts and names the first few lines, so nothing is dropped without a word.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import numpy as np
from sqlalchemy import select

from carrier_cli.errors import CarrierError, InputError
from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.overlap import Overlapped
from carrier_cli.memory.records import (
    Dimensions,
    memory_from,
    other_values,
    read_jsonl,
    vector_from,
)
from carrier_cli.memory.schema import AGENTS, ENTITIES, PARTICIPANTS, ROOMS
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory

FORMAT_VERSION = 1
BATCH = 500


CONFLICT_EXAMPLES = 5  # conflicts named in the report (all are counted)


@dataclass
class ImportReport:
    lines: int = 0
    memories_added: int = 0
    memories_existing: int = 0
    reembedded: int = 0
    other_records: int = 0
    # Same id as another memory (earlier in the file, or stored) but different content:
    # the first one is kept. `conflict_examples` names the first few, "file:line: id ...".
    conflicts: int = 0
    conflict_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "conflict_examples": list(self.conflict_examples)}

    def conflict(self, where: str, memory_id: uuid.UUID, other: str) -> None:
        self.conflicts += 1
        if len(self.conflict_examples) < CONFLICT_EXAMPLES:
            self.conflict_examples.append(f"{where}: id {memory_id} differs from {other}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def memory_record(memory: Memory, *, with_vectors: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "memory",
        "id": str(memory.id),
        "agent_id": str(memory.agent_id),
        "room_id": str(memory.room_id) if memory.room_id else None,
        "entity_id": str(memory.entity_id) if memory.entity_id else None,
        "kind": str(memory.kind),
        "content": memory.content,
        "created_at": _iso(memory.created_at),
        "unique": memory.unique,
        "metadata": memory.metadata,
    }
    if with_vectors and memory.embedding is not None:
        record["embedding_model"] = memory.embedding_model
        record["embedding"] = [round(float(x), 7) for x in memory.embedding]
    return record


async def export_records(
    store: MemoryStore, *, agent_id: uuid.UUID | None = None, with_vectors: bool = False
) -> list[dict[str, Any]]:
    """Agents, entities, rooms and participants first, then memories oldest first."""
    records: list[dict[str, Any]] = [
        {"type": "header", "format": "carrier-memory", "version": FORMAT_VERSION}
    ]
    agents, entities, rooms, parts = (
        AGENTS,
        ENTITIES,
        ROOMS,
        PARTICIPANTS,
    )
    async with store.engine.connect() as conn:
        q = select(agents)
        if agent_id is not None:
            q = q.where(agents.c.id == agent_id)
        for row in (await conn.execute(q.order_by(agents.c.created_at))).all():
            records.append(
                {
                    "type": "agent",
                    "id": str(row.id),
                    "name": row.name,
                    "created_at": _iso(row.created_at),
                    "metadata": row.metadata,
                }
            )
        for row in (await conn.execute(select(entities).order_by(entities.c.created_at))).all():
            records.append(
                {
                    "type": "entity",
                    "id": str(row.id),
                    "platform": row.platform,
                    "external_id": row.external_id,
                    "names": row.names,
                    "created_at": _iso(row.created_at),
                    "metadata": row.metadata,
                }
            )
        q = select(rooms)
        if agent_id is not None:
            q = q.where(rooms.c.agent_id == agent_id)
        room_ids: set[uuid.UUID] = set()
        for row in (await conn.execute(q.order_by(rooms.c.created_at))).all():
            room_ids.add(row.id)
            records.append(
                {
                    "type": "room",
                    "id": str(row.id),
                    "agent_id": str(row.agent_id),
                    "source": row.source,
                    "external_id": row.external_id,
                    "name": row.name,
                    "created_at": _iso(row.created_at),
                    "last_active_at": _iso(row.last_active_at),
                    "metadata": row.metadata,
                }
            )
        for row in (await conn.execute(select(parts))).all():
            if row.room_id in room_ids:
                records.append(
                    {
                        "type": "participant",
                        "room_id": str(row.room_id),
                        "entity_id": str(row.entity_id),
                        "joined_at": _iso(row.joined_at),
                    }
                )
    offset = 0
    while True:
        page = await store.list(
            agent_id=agent_id,
            limit=BATCH,
            offset=offset,
            with_vectors=with_vectors,
            oldest_first=True,
        )
        records.extend(memory_record(m, with_vectors=with_vectors) for m in page)
        if len(page) < BATCH:
            break
        offset += BATCH
    return records


async def export_jsonl(
    store: MemoryStore,
    out: IO[str],
    *,
    agent_id: uuid.UUID | None = None,
    with_vectors: bool = False,
) -> int:
    """Write the export; returns the number of memories written."""
    count = 0
    for record in await export_records(store, agent_id=agent_id, with_vectors=with_vectors):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += record["type"] == "memory"
    return count


@dataclass
class _Parsed:
    """One validated line, ready to write: a memory (and its vector) or another record."""

    where: str
    memory: Memory | None = None
    vector: np.ndarray | None = None
    other: tuple[str, Any, dict[str, Any], list[str]] | None = None  # kind, table, values, keys


def _parse(
    store: MemoryStore, lines: Iterable[str], source: str, report: ImportReport
) -> list[_Parsed]:
    """Every line read and checked before anything is written. A memory id seen earlier in
    the file is dropped here: with the same content it is a plain repeat, with different
    content a conflict (reported; the first line wins, as the stored memory would)."""
    parsed: list[_Parsed] = []
    dimensions = Dimensions(store.embedder.model_id, getattr(store.embedder, "dimension", None))
    seen: dict[uuid.UUID, tuple[int, dict[str, Any]]] = {}  # id -> first line, content
    for number, record in read_jsonl(lines, source):
        report.lines += 1
        where = f"{source}:{number}"
        kind = record["type"]
        if kind == "memory":
            memory = memory_from(record, where)
            vector = vector_from(record, where, dimensions)
            first = seen.get(memory.id)
            if first is not None:
                if first[1] != memory.content:
                    report.conflict(where, memory.id, f"line {first[0]}")
                else:
                    report.memories_existing += 1
                continue
            seen[memory.id] = (number, memory.content)
            parsed.append(_Parsed(where, memory=memory, vector=vector))
        elif kind == "header":
            version = record.get("version", 1)
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise InputError(
                    f"{where}: export format version {version!r} "
                    "is newer than this Carrier understands.",
                    hint="Upgrade Carrier to import this file.",
                )
        elif kind in ("agent", "entity", "room", "participant"):
            parsed.append(_Parsed(where, other=other_values(kind, record, where)))
        else:
            raise InputError(f"{where}: unknown record type {kind!r}.")
    return parsed


async def import_jsonl(
    store: MemoryStore,
    lines: Iterable[str],
    *,
    source: str = "<input>",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import an export (see the module docstring): the whole input is validated first
    (InputError naming the line; nothing written), then applied in batches. Conflicting
    duplicates are counted in the report, not raised: the rest of the file is imported."""
    report = ImportReport()
    parsed = _parse(store, lines, source, report)
    memories = sum(1 for item in parsed if item.memory is not None)
    # PostgreSQL: a large import keeps HNSW maintenance out of its inserts (the store
    # decides how from the count; a no-op on SQLite).
    try:
        async with store.bulk_load(rows=memories):
            await _apply(store, parsed, report, progress)
    except StorageFailure as failure:
        raise _interrupted(failure, source, report, memories) from failure
    except CarrierError:
        raise
    except Exception as exc:
        # A driver error that got past the engine's hook (raised outside a statement; seen
        # once in CI when every backend of an import was killed) is a storage failure too:
        # reported with how far the import got, not at the command line without it.
        explained = store.explain(exc)
        if explained is None:
            raise
        raise _interrupted(explained, source, report, memories) from exc
    return report


def _interrupted(
    failure: StorageFailure, source: str, report: ImportReport, total: int
) -> StorageFailure:
    """The storage failure, saying how far the import got: every batch is committed on its
    own and import skips stored ids, so rerunning the same import completes it."""
    stored = f"{report.memories_added} of {total} memories from {source} were stored"
    if failure.kind == "server_gone":
        message = (
            f"The PostgreSQL server closed the connection during the import; {stored}. "
            f"{failure.message}"
        )
    else:
        message = f"{failure.message} The import stopped; {stored}."
    hint = f"{failure.hint} " if failure.hint else ""
    hint += "Rerun the same import to continue: memories already stored are skipped."
    interrupted = StorageFailure(failure.kind, message, hint=hint)
    interrupted.exit_code = failure.exit_code
    return interrupted


async def _apply(
    store: MemoryStore,
    parsed: Sequence[_Parsed],
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    pending: list[_Parsed] = []

    async def store_batch(batch: list[_Parsed]) -> None:
        existing = await store._get_many([item.memory.id for item in batch if item.memory])
        fresh: list[Memory] = []
        for item in batch:
            memory = item.memory
            assert memory is not None
            stored = existing.get(memory.id)
            if stored is not None:
                if stored.content != memory.content:
                    report.conflict(item.where, memory.id, "the stored memory")
                else:
                    report.memories_existing += 1
                continue
            if item.vector is not None and memory.embedding_model == store.embedder.model_id:
                memory.embedding = item.vector.tolist()
            else:
                memory.embedding, memory.embedding_model = None, None
                report.reembedded += item.vector is not None
            fresh.append(memory)
        await store.add_many(fresh, dedupe=False)
        report.memories_added += len(fresh)
        if progress is not None:
            progress(len(batch))

    async with Overlapped() as pipeline:  # a batch is embedded while the last is written

        async def flush() -> None:
            if pending:
                await pipeline.submit(store_batch(pending.copy()))
                pending.clear()

        for item in parsed:
            if item.memory is not None:
                pending.append(item)
                if len(pending) >= BATCH:
                    await flush()
            elif item.other is not None:
                await flush()
                await pipeline.drain()
                await _write_other(store, *item.other)
                report.other_records += 1
        await flush()


async def _write_other(
    store: MemoryStore, kind: str, table: Any, values: dict[str, Any], keys: list[str]
) -> None:
    backend = store._backend
    if kind == "room":
        agent_id = values["agent_id"]
        await backend.insert_ignore(
            AGENTS,
            {
                "id": agent_id,
                "name": f"agent-{str(agent_id)[:8]}",
                "created_at": values["created_at"],
                "metadata": {},
            },
            ["id"],
        )
    await backend.insert_ignore(table, values, keys)
