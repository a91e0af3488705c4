"""A connection lost while an import's pipelined INSERT waits to write is reported, never a
hang (the killed-mid-import test hung about 1 run in 5 on a loaded machine).

asyncpg's executemany sends its rows in 128 KB slices and, when the socket backs up, waits
for asyncio's "writing allowed" between them; a connection lost during that wait never
allowed writing again, so the INSERT waited forever with no backend left on the server
(pg_stat_activity empty). The relay makes that moment exact: it stops reading the first
connection that sends 256 KB (the first batch's INSERT), lets the client's writes back up,
then closes the connection, as a busy server that is then killed does.
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
