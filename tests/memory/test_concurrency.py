"""Two processes writing to one database at once (the chat runtime and an operator's
`carrier memory import`, or two bots): nothing may fail and nothing may be lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

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
