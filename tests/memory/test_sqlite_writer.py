"""SqliteWriter's group commit: writes queued while a transaction runs share the next one,
each in its own savepoint; no caller is answered before the COMMIT; cancelled writes that
have not started are skipped; a failed COMMIT fails every write of its group."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from carrier_cli.memory.sqlite.engine import GROUP_LIMIT, SqliteWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    made = SqliteWriter.create(f"sqlite:///{tmp_path / 'w.db'}")
    assert made is not None

    def schema(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
            "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await made.run(schema)
    try:
        yield made
    finally:
        await made.close()


def rows(tmp_path: Path) -> list[tuple[str, int]]:
    """What another connection sees: committed rows only (WAL)."""
    with sqlite3.connect(tmp_path / "w.db") as other:
        return sorted(other.execute("SELECT k, n FROM t").fetchall())


def insert(key: str, n: int = 0, ran: list[str] | None = None) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        if ran is not None:
            ran.append(key)
        conn.exec_driver_sql("INSERT INTO t VALUES (?, ?)", (key, n))
        # Each write moves the counter by its own digit: the final value spells the order.
        conn.exec_driver_sql("UPDATE counter SET n = n * 10 + ?", (n,))
        return key

    return work


class Blocker:
    """A write that holds the writer thread until released, so that the writes queued
    meanwhile form one group; it records the statements sent after it (sqlite3 trace)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.trace: list[str] = []

    def __call__(self, conn: Connection) -> str:
        conn.connection.driver_connection.set_trace_callback(self.trace.append)
        self.entered.set()
        self.gate.wait(10)
        return "blocker"

    async def start(self, writer: SqliteWriter) -> asyncio.Task[Any]:
        task = asyncio.create_task(writer.run(self))
        assert await asyncio.to_thread(self.entered.wait, 10)
        return task

    def statements(self, *kinds: str) -> list[str]:
        return [s for s in self.trace if s.split()[0].upper() in kinds]


async def queued(writer: SqliteWriter, works: list[Callable[[Connection], Any]]) -> list[Any]:
    tasks = [asyncio.create_task(writer.run(work)) for work in works]
    for _ in range(100):
        await asyncio.sleep(0)
        if len(writer._queue) == len(works):
            break
    assert len(writer._queue) == len(works)
    return tasks


async def test_writes_queued_together_share_one_transaction_in_order(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    blocker = Blocker()
    first = await blocker.start(writer)
    before = writer.transactions
    ran: list[str] = []
    tasks = await queued(writer, [insert(f"k{i}", i, ran) for i in range(1, 6)])
    blocker.gate.set()
    assert await first == "blocker"
    assert await asyncio.gather(*tasks) == ["k1", "k2", "k3", "k4", "k5"]
    assert ran == ["k1", "k2", "k3", "k4", "k5"]
    assert writer.transactions == before + 1, "the five queued writes: one transaction"
    # After the blocker's COMMIT: one BEGIN, a savepoint per write, one COMMIT.
    assert blocker.statements("BEGIN", "COMMIT") == ["COMMIT", "BEGIN IMMEDIATE", "COMMIT"]
    assert len(blocker.statements("SAVEPOINT")) == 5
    assert rows(tmp_path) == [(f"k{i}", i) for i in range(1, 6)]
    with sqlite3.connect(tmp_path / "w.db") as other:
        assert other.execute("SELECT n FROM counter").fetchone() == (12345,)


async def test_a_failing_write_rolls_back_only_itself(writer: SqliteWriter, tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    def half_then_fail(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO t VALUES ('half', 9)")
        conn.exec_driver_sql("UPDATE counter SET n = n * 10 + 9")
        raise ValueError("the write's own failure")

    blocker = Blocker()
    first = await blocker.start(writer)
    tasks = await queued(
        writer, [insert("a", 1), half_then_fail, insert("b", 2), insert("a", 3), insert("c", 4)]
    )
    blocker.gate.set()
    await first
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "a" and results[2] == "b" and results[4] == "c"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], IntegrityError), "a duplicate key: its own error"
    assert rows(tmp_path) == [("a", 1), ("b", 2), ("c", 4)]
    with sqlite3.connect(tmp_path / "w.db") as other:
        assert other.execute("SELECT n FROM counter").fetchone() == (124,)
    assert await writer.run(insert("d", 5)) == "d", "the writer goes on"


async def test_no_caller_is_answered_before_the_commit(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    later = threading.Event()

    def slow(conn: Connection) -> str:
        later.wait(10)
        conn.exec_driver_sql("INSERT INTO t VALUES ('slow', 2)")
        return "slow"

    blocker = Blocker()
    first = await blocker.start(writer)
    early, late = await queued(writer, [insert("early", 1), slow])
    blocker.gate.set()
    await first
    await asyncio.sleep(0.2)  # "early" has run; its transaction waits for "slow"
    assert not early.done(), "answered before its transaction committed"
    assert rows(tmp_path) == []
    later.set()
    assert await early == "early"
    assert rows(tmp_path) == [("early", 1), ("slow", 2)], "committed when answered"
    assert await late == "slow"


async def test_a_write_cancelled_before_it_starts_is_skipped(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    ran: list[str] = []
    running = threading.Event()
    finish = threading.Event()

    def started_then_cancelled(conn: Connection) -> str:
        running.set()
        finish.wait(10)
        return insert("started", 4, ran)(conn)

    blocker = Blocker()
    first = await blocker.start(writer)
    tasks = await queued(
        writer,
        [insert("a", 1, ran), insert("cancelled", 2, ran), insert("b", 3, ran)],
    )
    tasks[1].cancel()
    await asyncio.sleep(0)
    queued_after = asyncio.create_task(writer.run(started_then_cancelled))
    await asyncio.sleep(0.05)
    blocker.gate.set()
    await first
    # A write the thread has taken runs to its end even if its caller gives up (and the
    # group's other callers are answered once it has, with the COMMIT).
    assert await asyncio.to_thread(running.wait, 10)
    queued_after.cancel()
    finish.set()
    assert await tasks[0] == "a" and await tasks[2] == "b"
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    with pytest.raises(asyncio.CancelledError):
        await queued_after
    assert await writer.run(insert("next", 5, ran)) == "next"
    assert ran == ["a", "b", "started", "next"]
    assert rows(tmp_path) == [("a", 1), ("b", 3), ("next", 5), ("started", 4)]


async def test_a_failed_commit_fails_every_write_of_the_group(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    def orphan(conn: Connection) -> str:
        # A deferred foreign key: the statement succeeds, the COMMIT is refused.
        conn.exec_driver_sql("INSERT INTO child VALUES (1, 99)")
        return "orphan"

    blocker = Blocker()
    first = await blocker.start(writer)
    tasks = await queued(writer, [insert("a", 1), orphan, insert("b", 2)])
    blocker.gate.set()
    await first
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    assert all("FOREIGN KEY" in str(r) for r in results)
    assert results[0] is results[1] is results[2], "the COMMIT's error, for each"
    assert rows(tmp_path) == [], "nothing of the group is stored"
    assert await writer.run(insert("after", 3)) == "after", "a fresh connection goes on"
    assert rows(tmp_path) == [("after", 3)]


async def test_a_transaction_sqlite_ended_fails_the_writes_before_and_reruns_the_rest(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    """After some errors (SQLITE_FULL, IOERR, ...) SQLite rolls the whole transaction back:
    the writes before in the group are lost (their callers fail), the ones after run in
    the next transaction (never in autocommit mode, unseen by a savepoint)."""
    ran: list[str] = []

    def ends_the_transaction(conn: Connection) -> None:
        conn.connection.driver_connection.execute("ROLLBACK")  # as SQLite does itself
        raise sqlite3.OperationalError("database or disk is full")

    blocker = Blocker()
    first = await blocker.start(writer)
    tasks = await queued(
        writer, [insert("lost", 1, ran), ends_the_transaction, insert("b", 2, ran)]
    )
    blocker.gate.set()
    await first
    lost, broke, after = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(lost, sqlite3.OperationalError) and lost is broke
    assert after == "b"
    assert ran == ["lost", "b"]
    assert rows(tmp_path) == [("b", 2)]
    assert blocker.statements("BEGIN", "COMMIT").count("BEGIN IMMEDIATE") == 2


async def test_a_group_holds_at_most_group_limit_writes(writer: SqliteWriter) -> None:
    blocker = Blocker()
    first = await blocker.start(writer)
    before = writer.transactions
    tasks = await queued(writer, [insert(f"k{i}") for i in range(GROUP_LIMIT + 6)])
    blocker.gate.set()
    await first
    await asyncio.gather(*tasks)
    assert writer.transactions == before + 2


async def test_a_single_failing_write_fails_alone_and_the_writer_goes_on(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    def fail(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO t VALUES ('gone', 1)")
        raise KeyError("alone")

    with pytest.raises(KeyError):
        await writer.run(fail)
    assert await writer.run(insert("ok", 2)) == "ok"
    assert rows(tmp_path) == [("ok", 2)]


async def test_concurrent_store_writes_are_all_stored_and_searchable(tmp_path: Path) -> None:
    """Through MemoryStore: a burst of concurrent adds (grouped by the writer) leaves every
    memory stored, in the vector index, and found by search."""
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory, MemoryKind
    from tests.memory.conftest import HashEmbedder

    store = await MemoryStore.open(f"sqlite:///{tmp_path / 's.db'}", embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        room = await store.ensure_room(agent, "test", "r")
        texts = [f"memory number {i} about topic {i * 7}" for i in range(40)]
        memories = [
            Memory(agent_id=agent, room_id=room.id, content={"text": t}, kind=MemoryKind.FACT)
            for t in texts
        ]
        await asyncio.gather(*(store.add(m) for m in memories))
        assert await store.count(agent_id=agent) == 40
        for memory in memories[::7]:
            hits = await store.search(memory.text, agent_id=agent, k=1)
            assert hits and hits[0].memory.id == memory.id
    finally:
        await store.close()
