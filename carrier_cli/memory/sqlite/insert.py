"""The `memories` insert on SQLite, with the values encoded here instead of by SQLAlchemy.

SQLAlchemy runs each column's bind processor per row in Python (UUID to hex, JSON dumps,
datetime to text, the vector to bytes) and builds a parameter dict per row around them:
0.42 s of a 0.77 s insert of 10,000 rows (profiled here), the rest being SQLite itself.
Ingest with local embeddings ran at 0.6x of a plain sqlite-vec + wordllama loader for
that reason. Here each row becomes one tuple in a single pass and the statement goes to
the driver's executemany as it is.

The encoding must be the one SQLAlchemy writes, byte for byte, since every read still
goes through SQLAlchemy: tests/memory/test_sqlite_insert.py writes the same rows both
ways and compares the stored values column by column, and `COLUMNS` is checked against
the table so a new column cannot be forgotten here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from carrier_cli.memory.schema import MEMORIES

# Column -> encoder of its Python value (None stays NULL for every column).


def _uuid(value: uuid.UUID) -> str:
    return value.hex


def _json(value: Any) -> str:
    return json.dumps(value)


# json.dumps' own defaults, without its per-call argument checks (about 1 us a value).
_encode = json.JSONEncoder().encode
_string = json.encoder.encode_basestring_ascii


def _content(value: Any) -> str:
    """json.dumps(value), with a shortcut for the usual `{"text": ...}`: the same text
    (", " and ": " separators, ASCII escapes) at 0.6 us instead of 4.6 us (measured)."""
    if type(value) is dict and len(value) == 1:
        text = value.get("text")
        if type(text) is str:
            return '{"text": ' + _string(text) + "}"
    return _encode(value)


def encode_time(value: datetime) -> str:
    """A time as UTCDateTime stores it on SQLite (naive UTC, always microseconds)."""
    # UTCDateTime stores naive UTC; SQLAlchemy's SQLite DATETIME text always has
    # microseconds and a four-digit year ("2026-12-03 13:41:28.311193", "0999-...").
    # isoformat with timespec="microseconds" writes exactly that, then "+00:00" for an
    # aware UTC value, cut off here: 0.5 us against 2.3 us for astimezone + strftime
    # (measured on 1,000 rows), and strftime's %Y wrote "999" for the year 999.
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _vector(value: Any) -> bytes:
    return np.asarray(value, dtype=np.float32).tobytes()


def _bool(value: Any) -> int:
    return 1 if value else 0


def _plain(value: Any) -> Any:
    return value


COLUMNS: dict[str, Callable[[Any], Any]] = {
    "id": _uuid,
    "agent_id": _uuid,
    "room_id": _uuid,
    "entity_id": _uuid,
    "kind": _plain,
    "content": _json,
    "content_hash": _plain,
    "created_at": encode_time,
    "embedding": _vector,
    "embedding_model": _plain,
    "unique": _bool,
    "metadata": _json,
    "vector_segment": _plain,
}

_NAMES = tuple(COLUMNS)
_ENCODERS = tuple(COLUMNS.values())
INSERT_SQL = (
    "INSERT INTO memories ("
    + ", ".join(f'"{name}"' for name in _NAMES)
    + ") VALUES ("
    + ", ".join("?" for _ in _NAMES)
    + ") ON CONFLICT (id) DO NOTHING"
)


def table_columns() -> tuple[str, ...]:
    return tuple(column.name for column in MEMORIES.columns)


_UNSET = object()


def memory_values(
    rows: Sequence[dict[str, Any]], ids: Sequence[str] | None = None
) -> list[tuple[Any, ...]]:
    """The rows (memory.rows.memory_row dicts) as parameter tuples for INSERT_SQL; `ids`:
    the rows' ids as hex when the caller has them (SqliteBackend.insert_memories).

    Written out column by column rather than looping over COLUMNS: a generic loop with a
    call per value cost as much as SQLAlchemy's processors it replaces. UUID.hex is a
    Python property (~1 us): the agent, room and entity of consecutive rows are mostly
    the same objects, so each one's hex is reused while it repeats."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    dumps, content = _encode, _content
    agent_key: Any = _UNSET
    room_key: Any = _UNSET
    entity_key: Any = _UNSET
    agent_hex: str | None = None
    room_hex: str | None = None
    entity_hex: str | None = None
    for n, row in enumerate(rows):
        agent, room, entity = row["agent_id"], row["room_id"], row["entity_id"]
        if agent is not agent_key:
            agent_key, agent_hex = agent, None if agent is None else agent.hex
        if room is not room_key:
            room_key, room_hex = room, None if room is None else room.hex
        if entity is not entity_key:
            entity_key, entity_hex = entity, None if entity is None else entity.hex
        created, vector, metadata = row["created_at"], row["embedding"], row["metadata"]
        append(
            (
                row["id"].hex if ids is None else ids[n],
                agent_hex,
                room_hex,
                entity_hex,
                row["kind"],
                content(row["content"]),
                row["content_hash"],
                None if created is None else encode_time(created),
                None if vector is None else _vector(vector),
                row["embedding_model"],
                None if row["unique"] is None else _bool(row["unique"]),
                None if metadata is None else ("{}" if not metadata else dumps(metadata)),
                row["vector_segment"],
            )
        )
    return out


def memory_values_generic(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The same tuples through COLUMNS (what memory_values must equal; used by the test)."""
    return [
        tuple(
            None if (value := row[name]) is None else encode(value)
            for name, encode in zip(_NAMES, _ENCODERS, strict=True)
        )
        for row in rows
    ]
