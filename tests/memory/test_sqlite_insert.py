"""The SQLite insert encodes memories itself (memory/sqlite/insert.py), straight from the
Memory objects: what it stores must be what SQLAlchemy's bind processors store for the
memory_row dicts, byte for byte, or reads would change."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects.sqlite import insert

from carrier_cli.memory.rows import content_hash, memory_row
from carrier_cli.memory.schema import MEMORIES, METADATA
from carrier_cli.memory.sqlite.insert import (
    COLUMNS,
    INSERT_SQL,
    _encode_json,
    encode_time,
    memory_values,
    memory_values_generic,
    table_columns,
)
from carrier_cli.memory.types import Memory, MemoryKind


def _memories() -> tuple[list[Memory], list[np.ndarray | None]]:
    agent, room, entity = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    vector = np.random.default_rng(3).standard_normal(256).astype(np.float32)
    moments = [
        datetime(2026, 12, 3, 13, 41, 28, 311193, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written
        datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),  # converted
        datetime(2026, 6, 1, 9, 0),  # naive: taken as UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # four-digit year: "0999"
        datetime(2026, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),  # next day
        # A batch's times (consecutive microseconds, the text of their second reused)
        # across a second, a minute, a day and a year, then back, and between
        # others that are not UTC.
        datetime(2026, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # back in the same second
        datetime(2027, 1, 1, 0, 0, 0, 7),  # naive, in the second just cached
        datetime(2027, 1, 1, 1, 0, 0, 9, tzinfo=timezone(timedelta(hours=1))),  # the same
        datetime(2027, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 1, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),  # back a second
        datetime(9999, 12, 31, 23, 59, 59, 5, tzinfo=UTC),  # the last second there is
        datetime.max.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 6, tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
    ]
    # The usual content is {"text": ...} alone, encoded by a shortcut: with quotes,
    # backslashes, control and non-ASCII characters; and the other shapes.
    contents: list[dict[str, object]] = [
        {"text": f"h\u00e9llo \u2603 {i}", "nested": {"a": [1, 2.5, None, True]}} for i in range(4)
    ]
    contents += [{"text": 'say "hi"\\ \n\t\x00 \U0001f600 \u00e9'}, {"text": ""}]
    contents += [{"text": f"fact {i}"} for i in range(len(moments) - len(contents))]
    # Metadata of every shape JSON takes, the usual {"source": ..., "line": n} among them.
    metadatas: list[dict[Any, object]] = [
        {"source": "test", "line": 0},
        {},
        {"t\u00e9xt": '\u2603 "q" \\ \n', "n": -(2**70), "f": 1e16, "g": 0.1, "h": -0.0},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
        {"list": [1, [2, [3, {"deep": None}]]], "tuple": (1, "two"), "empty": {}, "no": []},
        {"bool": False, "none": None, "str": "", "emoji": "\U0001f600"},
    ]
    metadatas += [{"source": "bench", "line": i} for i in range(len(moments) - len(metadatas))]
    kinds: list[MemoryKind | str] = [MemoryKind.MESSAGE, MemoryKind.FACT, "fact", "lore"]
    memories = [
        Memory(
            agent_id=agent,
            room_id=room if i % 2 else None,
            entity_id=entity if i % 3 else None,
            kind=kinds[i % len(kinds)],  # type: ignore[arg-type]
            content=contents[i],
            metadata=metadatas[i],
            created_at=moment,
            unique=bool(i % 2),
        )
        for i, moment in enumerate(moments)
    ]
    vectors: list[np.ndarray | None] = [
        vector if i % 3 != 1 else None for i in range(len(memories))
    ]
    vectors[2] = vector * 2
    vectors[5] = vector.astype(np.float64)  # not the store's float32: converted
    for memory, v in zip(memories, vectors, strict=True):
        if v is not None or memory.content["text"] == "":
            memory.embedding_model = "local:test"  # dropped where there is no vector
    return memories, vectors


def _rows(
    memories: list[Memory], vectors: list[np.ndarray | None], segment: int | None = None
) -> list[dict[str, object]]:
    """The memories as memory_row dicts: what SQLAlchemy is given (PostgreSQL)."""
    rows = [memory_row(m, v) for m, v in zip(memories, vectors, strict=True)]
    rows[2]["vector_segment"] = segment
    return rows


def _stored(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        names = ", ".join(f'"{name}"' for name in table_columns())
        return conn.execute(f"SELECT {names} FROM memories ORDER BY id").fetchall()


def _by_sqlalchemy_and_directly(
    tmp_path: Path, rows: list[dict[str, object]], values: list[tuple[object, ...]]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    by_sqlalchemy, direct = tmp_path / "a.db", tmp_path / "b.db"
    for path in (by_sqlalchemy, direct):
        METADATA.create_all(create_engine(f"sqlite:///{path}"), tables=[MEMORIES])
    with create_engine(f"sqlite:///{by_sqlalchemy}").begin() as conn:
        conn.execute(insert(MEMORIES).on_conflict_do_nothing(), rows)
    with create_engine(f"sqlite:///{direct}").begin() as conn:
        conn.exec_driver_sql(INSERT_SQL, values)
        conn.exec_driver_sql(INSERT_SQL, values)  # again: ignored, as before
    return _stored(by_sqlalchemy), _stored(direct)


def test_the_columns_encoded_are_the_tables() -> None:
    assert tuple(COLUMNS) == table_columns()


def test_values_written_directly_from_memories_equal_sqlalchemys(tmp_path: Path) -> None:
    memories, vectors = _memories()
    expected, stored = _by_sqlalchemy_and_directly(
        tmp_path, _rows(memories, vectors), memory_values(memories, vectors)
    )
    assert stored == expected
    assert len(stored) == len(memories)
    # Byte for byte: the text columns as SQLite holds them, not only equal when read.
    with sqlite3.connect(tmp_path / "b.db") as conn:
        texts = conn.execute(
            "SELECT content, metadata, created_at, kind, typeof(kind) FROM memories ORDER BY id"
        ).fetchall()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert (
            texts
            == conn.execute(
                "SELECT content, metadata, created_at, kind, typeof(kind) FROM memories ORDER BY id"
            ).fetchall()
        )


def test_the_column_table_equals_sqlalchemy_for_every_column(tmp_path: Path) -> None:
    """COLUMNS (what memory_values must equal) against SQLAlchemy, `vector_segment`
    set too (PostgreSQL's column: memory_values writes NULL there)."""
    rows = _rows(*_memories(), segment=1)
    expected, stored = _by_sqlalchemy_and_directly(tmp_path, rows, memory_values_generic(rows))
    assert stored == expected


def test_the_unrolled_encoder_equals_the_column_table() -> None:
    memories, vectors = _memories()
    generic = memory_values_generic(_rows(memories, vectors))
    assert memory_values(memories, vectors) == generic
    digests = [content_hash(m.text) for m in memories]
    assert memory_values(memories, vectors, digests, [m.id.hex for m in memories]) == generic


def test_times_equal_encode_time_in_any_order() -> None:
    """The text of a time's second is reused while times stay in it; any step, forwards
    or back, across any boundary, gives what encode_time gives."""
    rng = np.random.default_rng(7)
    start = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    steps = rng.integers(-1_500_000, 1_500_000, size=3000).tolist()
    steps[::7] = [1] * len(steps[::7])  # runs of consecutive microseconds, as a batch has
    moments, moment = [], start
    for step in steps:
        moment += timedelta(microseconds=step)
        moments.append(moment)
    agent = uuid.uuid4()
    memories = [
        Memory(agent_id=agent, content={"text": "t"}, created_at=m, kind=MemoryKind.FACT)
        for m in moments
    ]
    extremes = [datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)]
    moments += [extremes[0] - timedelta(microseconds=1), *extremes, extremes[0]]
    memories += [
        Memory(agent_id=agent, content={"text": "t"}, created_at=m, kind=MemoryKind.FACT)
        for m in moments[-4:]
    ]
    written = [v[7] for v in memory_values(memories, [None] * len(memories))]
    assert written == [encode_time(m) for m in moments]
    assert len({w[:19] for w in written}) > 100  # many seconds, both ways


@pytest.mark.parametrize(
    "value",
    [
        {"source": "bench", "line": 12},
        {"a": {"b": [1, 2.5, -0.0, 1e300, 5e-324, None, True, False]}},
        {"\u00e9\u2603\U0001f600": '\x00\x1f\x7f"\\/'},
        {1: 1, 2.5: 2, False: 3, None: 4, "s": (5, 6)},
        {"nan": float("nan"), "inf": float("inf")},
        {"big": 2**200, "neg": -(2**64)},
        [1, "two", {"three": [3]}],
        {},
        [],
    ],
)
def test_metadata_is_dumps_text(value: object) -> None:
    assert _encode_json(value) == json.dumps(value)


def test_a_failed_encode_leaves_nothing_behind() -> None:
    shared = {"n": 1}
    with pytest.raises(TypeError):
        _encode_json({"ok": shared, "bad": object()})
    assert _encode_json({"ok": shared}) == json.dumps({"ok": shared})  # no false "circle"
    circle: dict[str, object] = {}
    circle["self"] = circle
    with pytest.raises((ValueError, RecursionError)):
        _encode_json(circle)
    assert _encode_json({"ok": shared}) == json.dumps({"ok": shared})


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_every_column_is_in_the_statement(column: str) -> None:
    assert f'"{column}"' in INSERT_SQL
