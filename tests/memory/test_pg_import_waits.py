"""An import into PostgreSQL never waits for ever: a connection lost while its pipelined
INSERT waits to write, and a lock another session will not let go, are both reported (how
far the import got; a rerun continues). The killed-mid-import test hung about 1 run in 5 on
a loaded machine.

asyncpg's executemany sends its rows in 128 KB slices and, when the socket backs up, waits
for asyncio's "writing allowed" between them; a connection lost during that wait never
allowed writing again, so the INSERT waited forever with no backend left on the server
(pg_stat_activity empty). The relay makes that moment exact: it stops reading the first
connection that sends 256 KB (the first batch's INSERT), lets the client's writes back up,
then closes the connection, as a busy server that is then killed does.

A lock held elsewhere (a transaction left open) is bounded by the load's lock_timeout
(postgres.backend.LOAD_LOCK_TIMEOUT_SQL, 60 s; 1 s here).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.transfer import import_jsonl
from tests.support.pg_proxy import StallingRelay
from tests.support.postgres import _asyncpg_dsn

MEMORIES = 1200  # 3 batches; ~2.5 KB a row, so one batch's INSERT is ~1.2 MB on the wire
# The import fails within seconds once its connection is cut (it waited forever before
# the fix); a minute leaves room for a loaded machine's embedding and cleanup.
REPORTED_WITHIN = 60.0


def _lines(count: int) -> list[str]:
    agent = str(uuid.UUID(int=7))
    padding = "the pump in the boiler room is serviced every spring. " * 28  # ~1.5 KB
    lines = ['{"type":"header","format":"carrier-memory","version":1}']
    for i in range(count):
        record = {
            "type": "memory",
            "id": str(uuid.UUID(int=50_000 + i)),
            "agent_id": agent,
            "kind": "fact",
            "content": {"text": f"fact number {i}: {padding}"},
        }
        lines.append(json.dumps(record))
    return lines


@pytest.mark.postgres
async def test_a_connection_lost_while_an_insert_waits_to_write_is_reported(
    postgres_url: str,
) -> None:
    async with StallingRelay(postgres_url, stall_after=256 * 1024) as relay:
        store = await MemoryStore.open(relay.url)
        try:
            relay.arm()
            lines = _lines(MEMORIES)
            task = asyncio.create_task(import_jsonl(store, lines, source="export.jsonl"))
            done, _ = await asyncio.wait([task], timeout=REPORTED_WITHIN)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert relay.cut.is_set(), "the relay never stalled a connection"
            assert done, f"the import hung: no answer {REPORTED_WITHIN:.0f} s after the cut"
            with pytest.raises(StorageFailure) as caught:
                task.result()
            assert caught.value.kind == "server_gone"
            message = str(caught.value)
            assert "closed the connection during the import" in message, message
            assert f"of {MEMORIES} memories from export.jsonl were stored" in message
        finally:
            await store.close()
        # A rerun (the relay now passes everything through) completes the import.
        store = await MemoryStore.open(relay.url)
        try:
            report = await import_jsonl(store, lines, source="export.jsonl")
            assert report.memories_added + report.memories_existing == MEMORIES
        finally:
            await store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("memories", [300, 1200])  # a plain load; a bulk load (index DDL)
async def test_a_lock_held_by_another_session_stops_the_import_with_a_report(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, memories: int
) -> None:
    import asyncpg

    from carrier_cli.memory.postgres import backend as pg_backend
    from carrier_cli.memory.types import Memory, MemoryKind

    # raising=False: on code without the bound, the test shows the wait, not an AttributeError
    monkeypatch.setattr(
        pg_backend, "LOAD_LOCK_TIMEOUT_SQL", "SET LOCAL lock_timeout = '1s'", raising=False
    )
    store = await MemoryStore.open(postgres_url)
    holder = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        # One memory first: the vector column has its type, so the import alters nothing.
        agent = uuid.UUID(int=7)
        await store.add(Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": "seed"}))
        await holder.execute("BEGIN; LOCK TABLE memories IN SHARE MODE")  # left open
        task = asyncio.create_task(import_jsonl(store, _lines(memories), source="export.jsonl"))
        done, _ = await asyncio.wait([task], timeout=REPORTED_WITHIN)
        if not done:
            await holder.execute("ROLLBACK")  # or the cancelled load's cleanup waits too
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert done, f"the import waited {REPORTED_WITHIN:.0f} s for the lock"
        with pytest.raises(StorageFailure) as caught:
            task.result()
        assert caught.value.kind == "lock_timeout"
        message = str(caught.value)
        assert "waited too long for a lock held by another session" in message, message
        assert f"The import stopped; 0 of {memories} memories from export.jsonl" in message
        await holder.execute("ROLLBACK")
        report = await import_jsonl(store, _lines(memories), source="export.jsonl")
        assert report.memories_added == memories
    finally:
        await holder.close()
        await store.close()
