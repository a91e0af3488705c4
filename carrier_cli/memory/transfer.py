"""Export and import memories as JSON Lines: a lossless, backend-neutral round trip.

Each line is one record with a `type`: `agent`, `entity`, `room`, `participant` or
`memory`, in an order that import can apply line by line. Ids, kinds, rooms, timestamps,
content and metadata are kept exactly; vectors only with `with_vectors` (they are large and
tied to one model). Import never duplicates: every record is keyed by its id, so running
it twice changes nothing. Vectors from a model other than the store's are dropped and the
text is embedded again, so an export can move between embedding models too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select

from carrier_cli.errors import InputError
from carrier_cli.memory.overlap import Overlapped
from carrier_cli.memory.schema import AgentRow, EntityRow, ParticipantRow, RoomRow
from carrier_cli.memory.store import MemoryStore, _insert, _table
from carrier_cli.memory.types import Memory, MemoryKind

FORMAT_VERSION = 1
BATCH = 500


@dataclass
class ImportReport:
    lines: int = 0
    memories_added: int = 0
    memories_existing: int = 0
    reembedded: int = 0
    other_records: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


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
        _table(AgentRow),
        _table(EntityRow),
        _table(RoomRow),
        _table(ParticipantRow),
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


def read_jsonl(lines: Iterable[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{source}:{number}: not valid JSON ({exc.msg}).",
                hint="Import files are JSON Lines as written by `carrier memory export`.",
            ) from None
        if not isinstance(record, dict) or "type" not in record:
            raise InputError(f"{source}:{number}: expected a JSON object with a `type` field.")
        yield number, record


def _uuid(value: Any, where: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InputError(f"{where}: `{name}` is not a UUID: {value!r}.") from None


def _uuid_or_none(value: Any, where: str, name: str) -> uuid.UUID | None:
    return None if value in (None, "") else _uuid(value, where, name)


def _time(value: Any, where: str, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{where}: `{name}` is not an ISO timestamp: {value!r}.") from None


def _memory_from(record: dict[str, Any], where: str) -> Memory:
    try:
        kind = MemoryKind(record.get("kind", "message"))
    except ValueError:
        raise InputError(
            f"{where}: unknown memory kind {record.get('kind')!r}.",
            hint=f"Kinds are {', '.join(k.value for k in MemoryKind)}.",
        ) from None
    content = record.get("content")
    if not isinstance(content, dict):
        raise InputError(f"{where}: `content` must be an object with at least `text`.")
    return Memory(
        id=_uuid(record.get("id"), where, "id"),
        agent_id=_uuid(record.get("agent_id"), where, "agent_id"),
        room_id=_uuid_or_none(record.get("room_id"), where, "room_id"),
        entity_id=_uuid_or_none(record.get("entity_id"), where, "entity_id"),
        kind=kind,
        content=content,
        created_at=_time(record.get("created_at"), where, "created_at"),
        unique=bool(record.get("unique", True)),
        metadata=dict(record.get("metadata") or {}),
        embedding=record.get("embedding"),
        embedding_model=record.get("embedding_model"),
    )


async def import_jsonl(
    store: MemoryStore,
    lines: Iterable[str],
    *,
    source: str = "<input>",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    pending: list[Memory] = []
    if isinstance(lines, Sequence) and store.backend == "postgresql":
        # PostgreSQL: a large import keeps HNSW maintenance out of its inserts (the store
        # decides how from the count). A stream of unknown length is added row by row.
        # At most this many memories: every record but blank lines (the few agent, room
        # and entity records included; any JSON spacing).
        incoming = sum(1 for line in lines if line.strip())
        async with store.bulk_load(rows=incoming):
            return await import_jsonl(store, iter(lines), source=source, progress=progress)

    async def store_batch(batch: list[Memory]) -> None:
        existing = await store._get_many([m.id for m in batch])
        fresh = [m for m in batch if m.id not in existing]
        for memory in fresh:
            if memory.embedding is not None and memory.embedding_model != store.embedder.model_id:
                memory.embedding, memory.embedding_model = None, None
                report.reembedded += 1
        await store.add_many(fresh, dedupe=False)
        report.memories_added += len({m.id for m in fresh})
        report.memories_existing += len(batch) - len(fresh)
        if progress is not None:
            progress(len(batch))

    async with Overlapped() as pipeline:  # a batch is embedded while the last is written

        async def flush() -> None:
            if pending:
                await pipeline.submit(store_batch(pending.copy()))
                pending.clear()

        for number, record in read_jsonl(lines, source):
            report.lines += 1
            where = f"{source}:{number}"
            kind = record["type"]
            if kind == "memory":
                pending.append(_memory_from(record, where))
                if len(pending) >= BATCH:
                    await flush()
            elif kind == "header":
                if record.get("version", 1) > FORMAT_VERSION:
                    raise InputError(
                        f"{where}: export format version {record.get('version')} "
                        "is newer than this Carrier understands.",
                        hint="Upgrade Carrier to import this file.",
                    )
            elif kind in ("agent", "entity", "room", "participant"):
                await flush()
                await pipeline.drain()
                await _import_other(store, kind, record, where)
                report.other_records += 1
            else:
                raise InputError(f"{where}: unknown record type {kind!r}.")
        await flush()
    return report


async def _import_other(store: MemoryStore, kind: str, record: dict[str, Any], where: str) -> None:
    now = datetime.now().astimezone()
    if kind == "agent":
        table = _table(AgentRow)
        values: dict[str, Any] = {
            "id": _uuid(record.get("id"), where, "id"),
            "name": str(record.get("name", "")),
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    elif kind == "entity":
        table = _table(EntityRow)
        values = {
            "id": _uuid(record.get("id"), where, "id"),
            "platform": str(record.get("platform")),
            "external_id": str(record.get("external_id")),
            "names": record.get("names") or [],
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    elif kind == "room":
        table = _table(RoomRow)
        agent_id = _uuid(record.get("agent_id"), where, "agent_id")
        async with store._write() as conn:
            await conn.execute(
                _insert(store.backend, _table(AgentRow))
                .values(id=agent_id, name=f"agent-{str(agent_id)[:8]}", created_at=now, metadata={})
                .on_conflict_do_nothing(index_elements=["id"])
            )
        values = {
            "id": _uuid(record.get("id"), where, "id"),
            "agent_id": agent_id,
            "source": str(record.get("source")),
            "external_id": str(record.get("external_id")),
            "name": record.get("name"),
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "last_active_at": _time(record.get("last_active_at"), where, "last_active_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    else:
        table = _table(ParticipantRow)
        values = {
            "room_id": _uuid(record.get("room_id"), where, "room_id"),
            "entity_id": _uuid(record.get("entity_id"), where, "entity_id"),
            "joined_at": _time(record.get("joined_at"), where, "joined_at") or now,
        }
        keys = ["room_id", "entity_id"]
    async with store._write() as conn:
        await conn.execute(
            _insert(store.backend, table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=keys)
        )
