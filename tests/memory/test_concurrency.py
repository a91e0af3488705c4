"""Two processes writing to one database at once (the chat runtime and an operator's
`carrier memory import`, or two bots): nothing may fail and nothing may be lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from carrier_cli.memory.backends import make_engine
from carrier_cli.memory.failures import NotADatabase
from carrier_cli.memory.sqlite.engine import make_sqlite_writer
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory, MemoryKind, stable_id

    async def main(url, tag, n):
        store = await MemoryStore.open(url)
        agent = await store.ensure_agent("shared")
        room = await store.ensure_room(agent, "discord", "same-room")
        person = await store.ensure_entity("discord", tag, tag)
        await store.ensure_participant(room.id, person.id)
        for i in range(n):
            await store.add(Memory(
                id=stable_id("discord", "message", f"{tag}-{i}", agent), agent_id=agent,
                room_id=room.id, entity_id=person.id,
                content={"text": f"writer {tag} says message number {i} about topic {i % 7}"}))
            if i % 10 == 0:
                await store.search("message about a topic", agent_id=agent, k=5)
                await store.recent(room.id, 10)
        await store.add_many([Memory(agent_id=agent, kind=MemoryKind.FACT,
                                     content={"text": f"fact {tag} {j}"}) for j in range(50)])
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


@pytest.mark.slow
async def test_two_processes_write_concurrently(db_url: str) -> None:
    store = await MemoryStore.open(db_url)  # created once, as `carrier db init` would
    agent = await store.ensure_agent("shared")
    await store.add(Memory(agent_id=agent, content={"text": "before the writers start"}))
    assert len(await store.search("writers", agent_id=agent)) == 1  # fills the vector cache
    n = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, tag, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
    try:
        assert await store.count() == 2 * n + 100 + 1
        room = await store.find_room(agent, "discord", "same-room")
        assert room is not None and len(await store.participants(room.id)) == 2
        # this process's vector cache saw every row the other processes wrote
        hits = await store.search("writer says message", agent_id=agent, k=1000, threshold=-1)
        assert len(hits) == 2 * n + 100 + 1
        assert sum(h.memory.unique for h in hits if h.memory.kind == "fact") == 100
    finally:
        await store.close()


def _hold_write_lock(path: Path, seconds: float, released: threading.Event) -> threading.Thread:
    """Another connection holding the write lock on a new rollback-journal file for a while:
    what a second process sees while the first one switches the file to WAL."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_process (x)")  # the header is written: not empty
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        released.set()  # before COMMIT: whoever gets the lock next sees it set
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


async def test_first_open_waits_while_another_connection_switches_to_wal(tmp_path: Path) -> None:
    # Once the flake of two `carrier instagram post` on a fresh home: PRAGMA journal_mode=WAL
    # upgrades a read lock to the write lock and got SQLITE_BUSY at once ("database is
    # locked"), busy_timeout or not. It now waits until the other connection is done.
    path = tmp_path / "fresh.db"
    released = threading.Event()
    holder = _hold_write_lock(path, 0.3, released)
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            assert released.is_set()  # it waited for the lock, as busy_timeout does
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            tables = (await conn.execute(text("SELECT name FROM sqlite_master"))).scalars()
            assert list(tables) == ["other_process"]
    finally:
        await engine.dispose()
        holder.join()
    assert mode == "wal"


def test_wal_switch_gives_up_on_other_errors(tmp_path: Path) -> None:
    # Only SQLITE_BUSY is waited for: a file that is not a database fails at once, not
    # after the 60 s the retry allows.
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    engine = make_sqlite_writer(f"sqlite+aiosqlite:///{path}")
    assert engine is not None
    started = time.monotonic()
    with pytest.raises(NotADatabase):
        engine.connect().close()
    engine.dispose()
    assert time.monotonic() - started < 5
