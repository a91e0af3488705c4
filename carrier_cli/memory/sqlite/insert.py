"""The `memories` insert on SQLite, with the values encoded here instead of by SQLAlchemy.

SQLAlchemy runs each column's bind processor per row in Python (UUID to hex, JSON dumps,
datetime to text, the vector to bytes) and builds a parameter dict per row around them:
0.42 s of a 0.77 s insert of 10,000 rows (profiled here), the rest being SQLite itself.
Ingest with local embeddings ran at 0.6x of a plain sqlite-vec + wordllama loader for
that reason. Here each memory becomes one tuple in a single pass (`memory_values`, from
the Memory objects themselves: no row dict in between) and the statement goes to the
driver's executemany as it is.

The encoding must be the one SQLAlchemy writes, byte for byte, since every read still
goes through SQLAlchemy: tests/memory/test_sqlite_insert.py writes the same rows both
ways and compares the stored values column by column, and `COLUMNS` is checked against
the table so a new column cannot be forgotten here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from carrier_cli.memory.rows import content_hash
from carrier_cli.memory.schema import MEMORIES
from carrier_cli.memory.types import Memory, MemoryKind

_SECOND = timedelta(seconds=1)
_MAX_UTC = datetime.max.replace(tzinfo=UTC)
_LAST_SECOND = _MAX_UTC.replace(microsecond=0)
_F32 = np.dtype(np.float32)

# Column -> encoder of its Python value (None stays NULL for every column).


def _uuid(value: uuid.UUID) -> str:
    return value.hex


def _json(value: Any) -> str:
    return json.dumps(value)


# json.dumps' own defaults, without its per-call argument checks (about 1 us a value).
_encode = json.JSONEncoder().encode
_string = json.encoder.encode_basestring_ascii
# And without building the C encoder again for each value, which JSONEncoder.encode does
# (json.encoder.c_make_encoder, with dumps' separators, ASCII escapes and NaN allowed):
# 3.4 -> 1.2 us for the ingest's {"source": ..., "line": n} (measured). The same text for
# every value dumps can encode; one made here is shared, so it keeps no circular-reference
# markers (a shared dict of them is left dirty by a failed encode, and two threads
# encoding one object would see a "circle"): a value that contains itself fails with
# RecursionError instead of dumps' ValueError.
_c_encoder = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, json.JSONEncoder().default, _string, None, ": ", ", ", False, False, True
    )
    if getattr(json.encoder, "c_make_encoder", None) is not None
    else None
)


def _encode_json(value: Any) -> str:
    """json.dumps(value) for a dict or list (metadata): the shared C encoder's text."""
    if _c_encoder is None:  # a Python without the _json accelerator
        return _encode(value)
    return "".join(_c_encoder(value, 0))


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
    if type(value) is np.ndarray and value.dtype is _F32:
        return value.tobytes()  # the store's own vectors: no asarray (0.26 -> 0.14 us)
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
_KIND_TEXT = {kind: kind.value for kind in MemoryKind}  # the enum -> its plain str
# "000" .. "999": a time's microseconds as two lookups instead of a format.
_THREE = tuple(f"{n:03d}" for n in range(1000))


def memory_values(
    memories: Sequence[Memory],
    vectors: Sequence[np.ndarray | None],
    digests: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> list[tuple[Any, ...]]:
    """The memories as parameter tuples for INSERT_SQL, straight from the objects: the
    values memory.rows.memory_row(memory, vector, digest) would hold, encoded as
    SQLAlchemy encodes them. `vectors`: each memory's unit vector or None (as the store
    computed them); `digests`: content_hash(memory.text) of each, and `ids` the ids as
    hex, when the caller has them (MemoryStore._insert_new, SqliteBackend.insert_memories).
    `vector_segment` is PostgreSQL's and always NULL here.

    No memory_row dict in between: building one (13 keys) a memory and reading it back
    cost ~2 us a memory at ingest. Written out column by column rather than looping over
    COLUMNS: a generic loop with a call per value cost as much as SQLAlchemy's
    processors it replaces. UUID.hex is a Python property (~0.2-1 us): the agent, room
    and entity of consecutive memories are mostly the same objects, so each one's hex
    is reused while it repeats; likewise a time's text up to its seconds (a batch's
    times are consecutive microseconds: 3.0 -> 0.4 us a time, measured on 1,000)."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    dumps, content, kinds, three = _encode_json, _content, _KIND_TEXT, _THREE
    agent_key: Any = _UNSET
    room_key: Any = _UNSET
    entity_key: Any = _UNSET
    agent_hex: str | None = None
    room_hex: str | None = None
    entity_hex: str | None = None
    # The current second of UTC times: [low, high) and its text "YYYY-MM-DD HH:MM:SS.".
    low: datetime | None = None
    high: datetime | None = None
    second = ""
    for n, memory in enumerate(memories):
        agent, room, entity = memory.agent_id, memory.room_id, memory.entity_id
        if agent is not agent_key:
            agent_key, agent_hex = agent, None if agent is None else agent.hex
        if room is not room_key:
            room_key, room_hex = room, None if room is None else room.hex
        if entity is not entity_key:
            entity_key, entity_hex = entity, None if entity is None else entity.hex
        created, vector, metadata = memory.created_at, vectors[n], memory.metadata
        if created is None:
            stamp = None
        elif created.tzinfo is UTC:
            if low is None or high is None or not low <= created < high:
                low = created.replace(microsecond=0)
                # low + 1 s overflows in the last second there is: stop just short of
                # it (datetime.max itself then takes this branch each time: still right).
                high = low + _SECOND if low < _LAST_SECOND else _MAX_UTC
                second = created.isoformat(" ", "seconds")[:19] + "."
            micro = created.microsecond
            stamp = second + three[micro // 1000] + three[micro % 1000]
        else:
            stamp = encode_time(created)
        kind = memory.kind
        unique = memory.unique
        append(
            (
                memory.id.hex if ids is None else ids[n],
                agent_hex,
                room_hex,
                entity_hex,
                kinds.get(kind) or str(MemoryKind(kind)),  # type: ignore[call-overload]
                content(memory.content),
                content_hash(memory.text) if digests is None else digests[n],
                stamp,
                None if vector is None else _vector(vector),
                memory.embedding_model if vector is not None else None,
                None if unique is None else (1 if unique else 0),
                "{}" if not metadata else dumps(metadata),
                None,
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
