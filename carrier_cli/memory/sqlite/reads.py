"""The turn's hot reads and small writes on SQLite, as plain SQL with rows decoded here.

Every turn reads its room's recent messages (32 rows) and the rows of its search hits,
and moves its room's `last_active_at`; a Discord turn also writes two cache rows. Through
SQLAlchemy each statement paid its compiled-statement cache lookup, execution context
and a result processor per column per row (UUID, JSON, datetime, bool), then `to_memory`:
0.48 ms for the 32 recent rows, against 0.11 ms for the same statement sent with
`exec_driver_sql` plus ~0.06 ms decoding them here (measured on the 100k bench database,
2-core machine). `exec_driver_sql` still goes through SQLAlchemy's connection, so driver
errors become the same StorageFailure / DBAPIError as before.

The values must be the ones SQLAlchemy gives, field for field:
tests/memory/test_sqlite_reads.py reads the same rows both ways and compares them. Values
in the shape Carrier writes (32 hex digit ids, "YYYY-MM-DD HH:MM:SS.ffffff" times) are
decoded directly; anything else (an imported or hand-edited row) goes through
SQLAlchemy's own result processor for that column, so it decodes as it always did.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np

from carrier_cli.memory.rows import KIND_OF, M
from carrier_cli.memory.sqlite.insert import encode_time as encode_time  # for its writes
from carrier_cli.memory.types import Memory, MemoryKind

# The columns of `rows.columns(False)`, in that order.
MEMORY_COLUMNS = (
    'id, agent_id, room_id, entity_id, kind, content, created_at, embedding_model, "unique", '
    "metadata"
)
RECENT_SQL = (
    f"SELECT {MEMORY_COLUMNS} FROM memories WHERE room_id = ? "
    "ORDER BY created_at DESC, id DESC LIMIT ?"
)
TOUCH_ROOM_SQL = (
    "UPDATE rooms SET last_active_at = ? WHERE rooms.id = ? AND rooms.last_active_at < ?"
)
CACHE_UPSERT_SQL = (
    "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)

# agent, room and sender ids repeat on nearly every row, and a room's recent messages on
# every turn: parsed once (UUIDs are immutable).
_IDS: dict[str, uuid.UUID] = {}
_IDS_LIMIT = 4096
_CONTENTS: dict[str, dict[str, Any]] = {}
_CONTENTS_LIMIT = 2048
_CONTENT_CHARS = 2000  # longer texts are parsed each time (bounds the cache to ~4 MB)
_SCALARS = (str, int, float, bool, type(None))


@cache
def recent_sql(kinds: int) -> str:
    """RECENT_SQL restricted to `kinds` kinds (parameters: room, *kinds, limit)."""
    if not kinds:
        return RECENT_SQL
    marks = ", ".join("?" for _ in range(kinds))
    return RECENT_SQL.replace("WHERE room_id = ?", f"WHERE room_id = ? AND kind IN ({marks})")


@cache
def ids_sql(count: int) -> str:
    """The memories with one of `count` ids (parameters: the ids as hex)."""
    marks = ", ".join("?" for _ in range(count))
    return f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id IN ({marks})"


@cache
def checked_ids_sql(count: int, state: str) -> str:
    """`ids_sql` and `state` (the vector index's two state columns: INDEX_STATE_COLUMNS)
    in one statement, so in one snapshot: the hit rows, each with a trailing 0, then one
    row (the state, NULLs, 1). A warm search scans first and checks the state after
    (SqliteBackend.search)."""
    padded = ", ".join([state, *["NULL"] * (MEMORY_COLUMNS.count(",") - 1), "1"])
    if not count:
        return f"SELECT {padded}"
    hits = ids_sql(count).replace(" FROM memories", ", 0 FROM memories", 1)
    return f"{hits} UNION ALL SELECT {padded}"


@cache
def checked_rowids_sql(count: int, state: str) -> str:
    """`checked_ids_sql` by rowid (parameters: the rowids): a warm search knows its hits'
    rowids from the vector index, and a lookup by rowid reads the table's b-tree only,
    not the id index first (10 rows of the 100k bench database: 95-107 vs 135-178 us)."""
    if not count:
        return checked_ids_sql(0, state)
    marks = ", ".join("?" for _ in range(count))
    return checked_ids_sql(count, state).replace(
        f"WHERE id IN ({marks})", f"WHERE rowid IN ({marks})", 1
    )


@cache
def hashes_sql(count: int) -> str:
    """(content_hash, embedding_model, embedding) of the memories with one of `count`
    content hashes. Only content_hash in SQL: with `embedding_model = ?` too, SQLite picks
    the (unselective) model index and scans every row."""
    marks = ", ".join("?" for _ in range(count))
    return (
        "SELECT content_hash, embedding_model, embedding FROM memories "
        f"WHERE content_hash IN ({marks})"
    )


def decode_vector(value: Any) -> np.ndarray:
    """An embedding blob as EmbeddingVector gives it (float32, read-only over the bytes)."""
    if isinstance(value, bytes | memoryview):
        return np.frombuffer(value, dtype=np.float32)
    return np.asarray(_processor("embedding")(value), dtype=np.float32)


@cache
def _processor(column: str) -> Callable[[Any], Any]:
    """SQLAlchemy's own result processor of a memories column on SQLite (the slow path)."""
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    dialect = SQLiteDialect_pysqlite()
    process = M.c[column].type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else (lambda value: value)


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    if type(value) is str and len(value) == 32:
        return uuid.UUID(value)
    return _processor("id")(value)  # type: ignore[no-any-return]


def _shared_uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    found = _IDS.get(value)
    if found is None:
        found = _uuid(value)
        if found is not None and type(value) is str:
            if len(_IDS) >= _IDS_LIMIT:
                _IDS.clear()
            _IDS[value] = found
    return found


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is str and len(value) == 26:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return _processor("created_at")(value)  # type: ignore[no-any-return]


def _json(value: Any, column: str) -> Any:
    if value is None:
        return None
    if value == "{}":  # most rows' metadata: no parse
        return {}
    if type(value) is str:
        return json.loads(value)
    return _processor(column)(value)


def _content(value: Any) -> Any:
    """`content`, parsed once per distinct JSON text when it is a flat object of scalars
    (a plain message: text, name, source): a turn reads its room's 32 recent messages and
    31 of them were read by the turn before. decode_memory gives each Memory its own copy
    of the top-level dict, and a flat object has nothing nested that two Memory objects
    could share; anything else is parsed each time."""
    if type(value) is not str or len(value) > _CONTENT_CHARS:
        return _json(value, "content")
    held = _CONTENTS.get(value)
    if held is not None:
        return held  # decode_memory copies it
    parsed = _json(value, "content")
    if type(parsed) is dict and all(type(v) in _SCALARS for v in parsed.values()):
        if len(_CONTENTS) >= _CONTENTS_LIMIT:
            _CONTENTS.clear()
        _CONTENTS[value] = parsed
    return parsed


def decode_memory(row: Sequence[Any], known: uuid.UUID | None = None) -> Memory:
    """A row of MEMORY_COLUMNS as `rows.to_memory` makes it from SQLAlchemy's row;
    `known`: its id, already parsed (a search hit's, whose row was read by it)."""
    content = _content(row[5])
    metadata = _json(row[9], "metadata")
    kind = row[4]
    return Memory(
        id=known if known is not None else _shared_uuid(row[0]),  # type: ignore[arg-type]
        agent_id=_shared_uuid(row[1]),  # type: ignore[arg-type]
        room_id=_shared_uuid(row[2]),
        entity_id=_shared_uuid(row[3]),
        kind=KIND_OF.get(kind) or MemoryKind(kind),
        content=dict(content) if content else {},
        created_at=_time(row[6]),
        unique=bool(row[8]),
        metadata=dict(metadata) if metadata else {},
        embedding=None,
        embedding_model=row[7],
    )


async def recent(conn: Any, room_id: uuid.UUID, n: int, kinds: Sequence[str]) -> list[Memory]:
    """The room's last `n` memories (of `kinds`, if any), oldest first."""
    result = await conn.exec_driver_sql(recent_sql(len(kinds)), (room_id.hex, *kinds, n))
    return [decode_memory(row) for row in reversed(result.all())]


def checked_hits(
    rows: Sequence[Sequence[Any]], ids: dict[str, uuid.UUID], *, only_known: bool = False
) -> tuple[tuple[int, int], dict[uuid.UUID, Memory]]:
    """The rows of `checked_ids_sql` (or `checked_rowids_sql`): the index state (rev, max
    rowid) and the hits by id; `ids` are the hits' UUIDs by hex (their rows' ids are not
    parsed again). `only_known`: rows whose id is not one of `ids` are left out (read by
    rowid, a row that holds another memory than the index expects)."""
    found: dict[uuid.UUID, Memory] = {}
    state = (0, 0)
    for row in rows:
        if row[10]:
            state = (int(row[0] or 0), int(row[1] or 0))
            continue
        known = ids.get(row[0])
        if known is None and only_known:
            continue
        memory = decode_memory(row, known)
        found[memory.id] = memory
    return state, found


async def by_ids(conn: Any, ids: Sequence[uuid.UUID], chunk: int) -> dict[uuid.UUID, Memory]:
    """The memories with these ids, by id (missing ones left out)."""
    found: dict[uuid.UUID, Memory] = {}
    for start in range(0, len(ids), chunk):
        part = [i.hex for i in ids[start : start + chunk]]
        result = await conn.exec_driver_sql(ids_sql(len(part)), tuple(part))
        for row in result.all():
            memory = decode_memory(row)
            found[memory.id] = memory
    return found
