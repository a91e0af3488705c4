"""SQLite bulk loads defer the WAL checkpoints to their end (SqliteBackend.bulk_load): the
writer's wal_autocheckpoint is raised for the load, restored after it (also when it
fails, and once for nested loads), and what the load wrote is checkpointed at the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.memory.sqlite.backend import BULK_WAL_PAGES
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.conftest import HashEmbedder


async def _autocheckpoint(store: MemoryStore) -> int:
    def read(conn: Any) -> int:
        driver = conn.connection.driver_connection
        return int(driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    return int(await store._backend.run_write(read))


def _facts(agent: Any, n: int, start: int = 0) -> list[Memory]:
    return [
        Memory(agent_id=agent, content={"text": f"fact {i}"}, kind=MemoryKind.FACT)
        for i in range(start, start + n)
    ]


def _rows_in_the_database_file(path: Path) -> int:
    """The memories in the database file itself, without the WAL (immutable=1 reads
    the file as it is): those checkpointed."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
    finally:
        conn.close()


async def test_a_load_defers_checkpoints_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = await MemoryStore.open(f"sqlite:///{path}", embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        default = await _autocheckpoint(store)
        assert default != BULK_WAL_PAGES
        async with store.bulk_load(rows=300):
            assert await _autocheckpoint(store) == BULK_WAL_PAGES
            async with store.bulk_load(rows=100):  # nested: one setting for both
                await store.add_many(_facts(agent, 100))
            assert await _autocheckpoint(store) == BULK_WAL_PAGES
            await store.add_many(_facts(agent, 200, 100))
        assert await _autocheckpoint(store) == default
        # Checkpointed at the end: the database file holds what the load wrote.
        assert _rows_in_the_database_file(path) == 300
        assert await store.count(agent_id=agent) == 300
        with pytest.raises(ZeroDivisionError):
            async with store.bulk_load(rows=1):
                await store.add_many(_facts(agent, 10, 300))
                raise ZeroDivisionError
        assert await _autocheckpoint(store) == default
        assert await store.count(agent_id=agent) == 310
    finally:
        await store.close()


async def test_a_writer_connection_replaced_during_a_load_keeps_the_setting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    store = await MemoryStore.open(f"sqlite:///{path}", embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        default = await _autocheckpoint(store)
        async with store.bulk_load(rows=10):

            def fail(conn: Any) -> None:
                raise RuntimeError("a failed transaction drops the writer's connection")

            with pytest.raises(RuntimeError):
                await store._backend.run_write(fail)
            assert await _autocheckpoint(store) == BULK_WAL_PAGES
            await store.add_many(_facts(agent, 10))
        assert await _autocheckpoint(store) == default
    finally:
        await store.close()
