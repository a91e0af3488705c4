"""The SQLite hot reads and writes go to the driver (memory/sqlite/reads.py): what they
read must be what SQLAlchemy's result processors and `to_memory` give, field for field,
and what they write what SQLAlchemy's statements wrote."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from carrier_cli.memory.rows import M, columns, to_memory
from carrier_cli.memory.schema import CACHE, METADATA, ROOMS
from carrier_cli.memory.sqlite import reads
from carrier_cli.memory.sqlite.insert import INSERT_SQL, memory_values
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.conftest import HashEmbedder

AGENT, ROOM, ENTITY = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _memories() -> list[Memory]:
    moments = [
        datetime(2026, 12, 3, 13, 41, 28, 311193, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 6, 1, 9, 0, 0, 1),
    ]
    return [
        Memory(
            agent_id=AGENT,
            room_id=ROOM,
            entity_id=ENTITY if i % 3 else None,
            kind=[MemoryKind.MESSAGE, MemoryKind.FACT, MemoryKind.LORE][i % 3],
            content={"text": f"héllo \u2603 {i}", "nested": {"a": [1, 2.5, None, True]}},
            metadata={} if i % 2 else {"source": "test", "line": i},
            created_at=moment,
            unique=bool(i % 2),
            embedding_model="local:test" if i % 2 else None,
        )
        for i, moment in enumerate(moments)
    ]


def _database(path: Path) -> list[Memory]:
    engine = create_engine(f"sqlite:///{path}")
    METADATA.create_all(engine, tables=[M, ROOMS])
    memories = _memories()
    with engine.begin() as conn:
        conn.exec_driver_sql(INSERT_SQL, memory_values(memories, [None] * len(memories)))
    return memories


class _Async:
    """An AsyncConnection-like `exec_driver_sql` over a sync connection (as InlineConnection)."""

    def __init__(self, conn: object) -> None:
        self.sync = conn

    async def exec_driver_sql(self, statement: str, parameters: object = None) -> object:
        return self.sync.exec_driver_sql(statement, parameters)  # type: ignore[attr-defined]


def _by_sqlalchemy(conn: object, ids: list[uuid.UUID]) -> dict[uuid.UUID, Memory]:
    rows = conn.execute(select(*columns(False)).where(M.c.id.in_(ids))).all()  # type: ignore[attr-defined]
    return {row.id: to_memory(row) for row in rows}


async def test_rows_decoded_by_hand_equal_sqlalchemys(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    memories = _database(path)
    # Rows in shapes Carrier does not write (an import, a hand edit): the slow path.
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO memories (id, agent_id, room_id, kind, content, content_hash, "
            "created_at, \"unique\", metadata) VALUES (?, ?, ?, 'message', '{}', 'h', "
            "'2026-01-02 03:04:05', 0, 'null')",
            (uuid.uuid4().hex, AGENT.hex, ROOM.hex),
        )
    ids = [m.id for m in memories]
    with create_engine(f"sqlite:///{path}").connect() as sync:
        every = [uuid.UUID(r[0]) for r in sync.exec_driver_sql("SELECT id FROM memories")]
        expected = _by_sqlalchemy(sync, every)
        direct = await reads.by_ids(_Async(sync), every, chunk=2)  # several chunks
        assert direct == expected
        assert len(direct) == 5
        assert all(m.created_at is not None and m.created_at.tzinfo is UTC for m in direct.values())
        recent = await reads.recent(_Async(sync), ROOM, 3, ())
        newest = sorted(expected.values(), key=lambda m: (m.created_at, m.id.hex))[-3:]
        assert recent == newest
        facts = await reads.recent(_Async(sync), ROOM, 10, ("fact", "lore"))
        assert [m.kind for m in facts] == [
            m.kind
            for m in sorted(expected.values(), key=lambda m: (m.created_at, m.id.hex))
            if m.kind in (MemoryKind.FACT, MemoryKind.LORE)
        ]
        assert await reads.by_ids(_Async(sync), [uuid.uuid4()], chunk=10) == {}
        assert set(ids) <= set(direct)


async def test_hits_read_with_the_state_equal_sqlalchemys(tmp_path: Path) -> None:
    """A warm search's one statement (checked_ids_sql): the same memories as SQLAlchemy
    reads, the state row apart, also with no hits at all."""
    path = tmp_path / "a.db"
    memories = _database(path)
    ids = [m.id for m in memories]
    with create_engine(f"sqlite:///{path}").connect() as sync:
        expected = _by_sqlalchemy(sync, ids)
        for wanted in (ids, ids[:1], []):
            sql = reads.checked_ids_sql(len(wanted), "7, NULL")
            rows = sync.exec_driver_sql(sql, tuple(i.hex for i in wanted)).all()
            known = {i.hex: i for i in wanted}
            state, found = reads.checked_hits(rows, known)
            assert state == (7, 0)
            assert found == {i: expected[i] for i in wanted}
            assert all(found[i] is not None and found[i].id is known[i.hex] for i in wanted)


def test_room_touch_and_cache_upsert_write_what_sqlalchemy_wrote(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    METADATA.create_all(engine, tables=[ROOMS, CACHE])
    old = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 12, 3, 15, 0, 0, 123, tzinfo=timezone(timedelta(hours=1)))
    rooms = [uuid.uuid4(), uuid.uuid4()]
    with engine.begin() as conn:
        for room in rooms:
            conn.execute(
                ROOMS.insert().values(
                    id=room,
                    agent_id=AGENT,
                    source="s",
                    external_id=room.hex,
                    created_at=old,
                    last_active_at=old,
                    metadata={},
                )
            )
        conn.execute(
            update(ROOMS)
            .where(ROOMS.c.id == rooms[0])
            .where(ROOMS.c.last_active_at < later)
            .values(last_active_at=later)
        )
        stamp = reads.encode_time(later)
        conn.exec_driver_sql(reads.TOUCH_ROOM_SQL, (stamp, rooms[1].hex, stamp))
        earlier = reads.encode_time(old)  # never moves a room back
        conn.exec_driver_sql(reads.TOUCH_ROOM_SQL, (earlier, rooms[1].hex, earlier))
        stored = conn.exec_driver_sql("SELECT last_active_at FROM rooms ORDER BY id").all()
        order = sorted(rooms, key=lambda r: r.hex)
        by_room = dict(zip(order, [r[0] for r in stored], strict=True))
        assert by_room[rooms[0]] == by_room[rooms[1]]


@pytest.mark.parametrize("value", [{"a": [1, "é"]}, "1", None, 3])
async def test_cache_set_stores_what_sqlalchemy_stored(tmp_path: Path, value: object) -> None:
    from carrier_cli.memory.store import MemoryStore

    store = await MemoryStore.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        await store.cache_set("k", value, ttl=60)
        assert await store.cache_get("k") == value
        await store.cache_set("k", {"again": value}, ttl=None)
        assert await store.cache_get("k") == {"again": value}
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "c.db") as raw:
        written = raw.execute("SELECT value, expires_at FROM cache").fetchall()
    engine = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    METADATA.create_all(engine, tables=[CACHE])
    with engine.begin() as conn:
        conn.execute(CACHE.insert().values(key="k", value={"again": value}))
        assert conn.exec_driver_sql("SELECT value, expires_at FROM cache").all() == written


@pytest.mark.parametrize("value", [{"a": [1, "é"]}, "1", None, 3])
async def test_cache_set_many_stores_what_cache_set_stored(tmp_path: Path, value: object) -> None:
    from carrier_cli.memory.store import MemoryStore

    rows = []
    for name, many in (("one.db", False), ("many.db", True)):
        store = await MemoryStore.open(f"sqlite:///{tmp_path / name}")
        try:
            if many:
                await store.cache_set_many([("k", value, None), ("t", {"v": value}, None)])
            else:
                await store.cache_set("k", value)
                await store.cache_set("t", {"v": value})
        finally:
            await store.close()
        with sqlite3.connect(tmp_path / name) as raw:
            rows.append(
                raw.execute("SELECT key, value, expires_at FROM cache ORDER BY key").fetchall()
            )
    assert rows[0] == rows[1]


async def test_inline_driver_reads_fail_as_sqlalchemy_fails(tmp_path: Path) -> None:
    from sqlalchemy.exc import DBAPIError

    from carrier_cli.memory.sqlite.engine import InlineConnection, make_sqlite_reader

    url = f"sqlite:///{tmp_path / 'e.db'}"
    engine = make_sqlite_reader(url)
    assert engine is not None
    with engine.connect() as conn, pytest.raises(DBAPIError) as by_sqlalchemy:
        conn.exec_driver_sql("SELECT nothing FROM nowhere")
    inline = InlineConnection(engine, url)
    try:
        with pytest.raises(DBAPIError) as direct:
            await inline.exec_driver_sql("SELECT nothing FROM nowhere")
        assert type(direct.value) is type(by_sqlalchemy.value)
        assert str(direct.value.orig) == str(by_sqlalchemy.value.orig)
        assert (await inline.exec_driver_sql("SELECT 1, ?", (2,))).one() == (1, 2)
    finally:
        inline.close()
        engine.dispose()


async def test_stored_vectors_by_driver_equal_sqlalchemys(
    tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    import numpy as np

    from carrier_cli.memory.rows import content_hash
    from carrier_cli.memory.sql import SqlBackend
    from carrier_cli.memory.store import MemoryStore

    store = await MemoryStore.open(f"sqlite:///{tmp_path / 'f.db'}", embedder=hash_embedder)
    try:
        texts = ["the sea is calm", "tea at noon", "the sea is calm", ""]
        for text in texts:
            await store.add(Memory(agent_id=AGENT, content={"text": text}), dedupe=False)
        backend = store._backend
        assert isinstance(backend, SqlBackend)
        hashes = [content_hash(t) for t in [*texts, "never stored"]]
        model = store.embedder.model_id
        direct = await backend.stored_vectors(model, hashes)
        expected = await SqlBackend.stored_vectors(backend, model, hashes)
        assert sorted(direct) == sorted(expected)
        assert len(direct) == 2
        for key, vector in expected.items():
            assert direct[key].dtype == vector.dtype == np.float32
            assert np.array_equal(direct[key], vector)
            assert direct[key].flags.writeable == vector.flags.writeable
        assert await backend.stored_vectors("other:model", hashes) == {}
    finally:
        await store.close()


async def test_contents_parsed_once_are_never_shared(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    _database(path)
    flat = Memory(agent_id=AGENT, room_id=ROOM, content={"text": "flat", "name": "A", "n": 1})
    flat.created_at = datetime(2026, 12, 4, tzinfo=UTC)
    with create_engine(f"sqlite:///{path}").begin() as conn:
        conn.exec_driver_sql(INSERT_SQL, memory_values([flat], [None]))
    with create_engine(f"sqlite:///{path}").connect() as sync:
        first = await reads.recent(_Async(sync), ROOM, 10, ())
        assert reads._CONTENTS.get('{"text": "flat", "name": "A", "n": 1}') is not None
        for memory in first:
            memory.content["text"] = "changed by a caller"
            memory.content.get("nested", {})["a"] = "changed too"
        again = await reads.recent(_Async(sync), ROOM, 10, ())
        every = [uuid.UUID(r[0]) for r in sync.exec_driver_sql("SELECT id FROM memories")]
        assert sorted(again, key=lambda m: m.id.hex) == sorted(
            _by_sqlalchemy(sync, every).values(), key=lambda m: m.id.hex
        )
