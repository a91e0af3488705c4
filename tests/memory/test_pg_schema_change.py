"""Two processes on one fresh PostgreSQL database: the first to embed gives
`memories.embedding` its dimension (ALTER TABLE ... TYPE vector(N)); the other one's pooled
connections still hold prepared statements typed against the old column, and PostgreSQL
refuses them once ("cached plan must not change result type"). Its next statement must
still succeed: the memory layer retries that one error once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, select

from carrier_cli.memory.rows import M
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.conftest import HashEmbedder

pytestmark = pytest.mark.postgres


def _memory(agent: uuid.UUID, room: uuid.UUID, text: str) -> Memory:
    return Memory(agent_id=agent, room_id=room, kind=MemoryKind.MESSAGE, content={"text": text})


async def _warmed(url: str, agent: uuid.UUID, room: uuid.UUID) -> MemoryStore:
    """Store B: every statement the steps below run is prepared (and cached) on its
    pooled connection before store A changes the column."""
    store = await MemoryStore.open(url, embedder=HashEmbedder())
    await store.add(_memory(agent, room, "warm up without a vector"), embed=False)
    warm = await store.list(agent_id=agent, with_vectors=True)
    await store.get(warm[0].id)
    await store.search("warm up", agent_id=agent)
    await store._backend.run_write(_vectors)
    return store


def _vectors(conn: Connection) -> list[object]:
    """A write transaction that reads the column back: run_write retries the whole of it."""
    return list(conn.execute(select(M.c.id, M.c.embedding)).all())


async def _altered(url: str, agent: uuid.UUID, room: uuid.UUID) -> None:
    """Store A, another engine (another process in production): the first embedding."""
    async with await MemoryStore.open(url, embedder=HashEmbedder()) as first:
        await first.add(_memory(agent, room, "the first vector gives the column its size"))


async def _setup(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    async with await MemoryStore.open(url, embedder=HashEmbedder()) as setup:
        agent = await setup.ensure_agent("stmt-agent")
        room = (await setup.ensure_room(agent, "test", "room-1")).id
    return agent, room


@pytest.mark.parametrize("step", ["add", "get", "list", "search", "write"])
async def test_other_store_survives_the_first_embedding(postgres_url: str, step: str) -> None:
    agent, room = await _setup(postgres_url)
    other = await _warmed(postgres_url, agent, room)
    try:
        await _altered(postgres_url, agent, room)
        if step == "add":
            added = await other.add(_memory(agent, room, "after the change"))
            assert added.embedding is not None
        elif step == "get":
            first = (await other.list(agent_id=agent))[0]  # newest: the embedded one
            got = await other.get(first.id)
            assert got is not None and got.embedding is not None
        elif step == "list":
            listed = await other.list(agent_id=agent, with_vectors=True)
            assert [m.embedding is not None for m in listed] == [True, False]
        elif step == "write":
            assert sum(row[1] is not None for row in await other._backend.run_write(_vectors)) == 1
        else:
            hits = await other.search("first vector size", agent_id=agent)
            assert hits and hits[0].memory.content["text"].startswith("the first vector")
        # and everything after it still works on the same pool
        assert len(await other.list(agent_id=agent)) >= 2
    finally:
        await other.close()
