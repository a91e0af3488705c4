"""The SQLite insert encodes rows itself (memory/sqlite/insert.py): what it stores must be
what SQLAlchemy's bind processors store, value for value, or reads would change."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects.sqlite import insert

from carrier_cli.memory.rows import memory_row
from carrier_cli.memory.schema import MEMORIES, METADATA
from carrier_cli.memory.sqlite.insert import (
    COLUMNS,
    INSERT_SQL,
    memory_values,
    memory_values_generic,
    table_columns,
)
from carrier_cli.memory.types import Memory, MemoryKind


def _rows() -> list[dict[str, object]]:
    agent, room, entity = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    vector = np.random.default_rng(3).standard_normal(256).astype(np.float32)
    moments = [
        datetime(2026, 12, 3, 13, 41, 28, 311193, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written
        datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),  # converted
        datetime(2026, 6, 1, 9, 0),  # naive: taken as UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # four-digit year: "0999"
        datetime(2026, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),  # next day
    ]
    # The usual content is {"text": ...} alone, encoded by a shortcut: with quotes,
    # backslashes, control and non-ASCII characters; and the other shapes.
    contents: list[dict[str, object]] = [
        {"text": f"h\u00e9llo \u2603 {i}", "nested": {"a": [1, 2.5, None, True]}} for i in range(4)
    ]
    contents += [{"text": 'say "hi"\\ \n\t\x00 \U0001f600 \u00e9'}, {"text": ""}]
    memories = [
        Memory(
            agent_id=agent,
            room_id=room if i % 2 else None,
            entity_id=entity if i % 3 else None,
            kind=MemoryKind.MESSAGE if i % 2 else MemoryKind.FACT,
            content=contents[i],
            metadata={} if i % 2 else {"source": "test", "line": i},
            created_at=moment,
            unique=bool(i % 2),
        )
        for i, moment in enumerate(moments)
    ]
    vectors = [vector, None, vector * 2, vector, vector, None]
    rows = []
    for memory, v in zip(memories, vectors, strict=True):
        if v is not None:
            memory.embedding_model = "local:test"
        rows.append(memory_row(memory, v))
    rows[2]["vector_segment"] = 1
    return rows


def _stored(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        names = ", ".join(f'"{name}"' for name in table_columns())
        return conn.execute(f"SELECT {names} FROM memories ORDER BY id").fetchall()


def test_the_columns_encoded_are_the_tables() -> None:
    assert tuple(COLUMNS) == table_columns()


def test_values_written_directly_equal_sqlalchemys(tmp_path: Path) -> None:
    rows = _rows()
    by_sqlalchemy, direct = tmp_path / "a.db", tmp_path / "b.db"
    for path in (by_sqlalchemy, direct):
        METADATA.create_all(create_engine(f"sqlite:///{path}"), tables=[MEMORIES])
    with create_engine(f"sqlite:///{by_sqlalchemy}").begin() as conn:
        conn.execute(insert(MEMORIES).on_conflict_do_nothing(), rows)
    with create_engine(f"sqlite:///{direct}").begin() as conn:
        conn.exec_driver_sql(INSERT_SQL, memory_values(rows))
        conn.exec_driver_sql(INSERT_SQL, memory_values(rows))  # again: ignored, as before
    assert _stored(direct) == _stored(by_sqlalchemy)
    assert len(_stored(direct)) == len(rows)


def test_the_unrolled_encoder_equals_the_column_table() -> None:
    rows = _rows()
    assert memory_values(rows) == memory_values_generic(rows)


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_every_column_is_in_the_statement(column: str) -> None:
    assert f'"{column}"' in INSERT_SQL
