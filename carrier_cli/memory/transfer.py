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
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import numpy as np
from sqlalchemy import select

from carrier_cli.errors import InputError
from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.overlap import Overlapped
from carrier_cli.memory.rows import table as _table
from carrier_cli.memory.schema import AgentRow, EntityRow, ParticipantRow, RoomRow
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

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
    """The memory of a record, without its vector (see `_vector`)."""
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
    model = record.get("embedding_model")
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
        embedding_model=str(model) if model is not None else None,
    )


_VECTOR_HINT = (
    "The file is damaged or was not written by `carrier memory export`; export it again, "
    "or delete the `embedding` field of that line to have the text embedded on import."
)


class _Dimensions:
    """The dimension each embedding model's vectors must have: the store's embedder fixes
    its own; any other model's first vector in the file fixes that model's (a later vector
    of another length means a damaged file; such vectors are re-embedded anyway, but
    silently accepting them would hide the damage)."""

    def __init__(self, store: MemoryStore) -> None:
        self.model = store.embedder.model_id
        dimension = getattr(store.embedder, "dimension", None)
        self.known: dict[str | None, tuple[int, str]] = {}
        if isinstance(dimension, int) and dimension > 0:
            self.known[self.model] = (dimension, f"the configured embedder `{self.model}`")

    def check(self, model: str | None, size: int, where: str) -> None:
        expected = self.known.setdefault(model, (size, f"{where}'s vector of the same model"))
        if expected[0] != size:
            raise InputError(
                f"{where}: the `embedding` has {size} dimensions, but {expected[1]} has "
                f"{expected[0]} (model `{model or 'unnamed'}`).",
                hint=_VECTOR_HINT,
            )


def _vector(record: dict[str, Any], where: str, dimensions: _Dimensions) -> np.ndarray | None:
    """The record's vector as float32, checked: a flat list of finite numbers, not all
    zero, of its model's dimension. A NaN or infinite component would make every
    similarity with it NaN (search misbehaves), a wrong dimension fails at the database."""
    raw = record.get("embedding")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InputError(
            f"{where}: `embedding` must be a non-empty list of numbers.", hint=_VECTOR_HINT
        )
    try:
        array = np.asarray(raw)
    except ValueError:  # ragged nesting
        array = np.asarray([None])
    if array.ndim != 1 or array.dtype.kind not in "fi":
        raise InputError(f"{where}: `embedding` must be a flat list of numbers.", hint=_VECTOR_HINT)
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    finite = np.isfinite(single)
    if not finite.all():
        position = int(np.flatnonzero(~finite)[0])
        value = float(array[position])
        shown = str(value) if not math.isfinite(value) else f"{value:g} (beyond float32)"
        raise InputError(
            f"{where}: `embedding` component {position} is {shown}; vectors must be finite.",
            hint=_VECTOR_HINT,
        )
    if not single.any():
        raise InputError(
            f"{where}: `embedding` is all zeros; it has no direction to search by.",
            hint=_VECTOR_HINT,
        )
    dimensions.check(record.get("embedding_model"), len(single), where)
    return single


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
    dimensions = _Dimensions(store)
    seen: dict[uuid.UUID, tuple[int, dict[str, Any]]] = {}  # id -> first line, content
    for number, record in read_jsonl(lines, source):
        report.lines += 1
        where = f"{source}:{number}"
        kind = record["type"]
        if kind == "memory":
            memory = _memory_from(record, where)
            vector = _vector(record, where, dimensions)
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
            parsed.append(_Parsed(where, other=_other_values(kind, record, where)))
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


def _other_values(
    kind: str, record: dict[str, Any], where: str
) -> tuple[str, Any, dict[str, Any], list[str]]:
    """An agent, entity, room or participant record as (kind, table, row values, key
    columns), checked while the file is validated."""
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
        values = {
            "id": _uuid(record.get("id"), where, "id"),
            "agent_id": _uuid(record.get("agent_id"), where, "agent_id"),
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
    return kind, table, values, keys


async def _write_other(
    store: MemoryStore, kind: str, table: Any, values: dict[str, Any], keys: list[str]
) -> None:
    backend = store._backend
    if kind == "room":
        agent_id = values["agent_id"]
        await backend.insert_ignore(
            _table(AgentRow),
            {
                "id": agent_id,
                "name": f"agent-{str(agent_id)[:8]}",
                "created_at": values["created_at"],
                "metadata": {},
            },
            ["id"],
        )
    await backend.insert_ignore(table, values, keys)
