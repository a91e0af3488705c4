"""MemoryStore.record_message: an incoming message with its room, sender and participant,
in as few write transactions as the intake cache allows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from carrier_cli.memory.intake import INTAKE_CACHE_SIZE, LRU, Intake
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Arrival, MemoryKind, stable_id
from tests.memory.conftest import HashEmbedder


def _arrival(
    text: str,
    *,
    room: str = "c1",
    sender: str = "42",
    name: str = "alice",
    memory_id: uuid.UUID | None = None,
) -> Arrival:
    return Arrival(
        source="discord",
        room_key=room,
        room_name=f"#{room}",
        sender_key=sender,
        sender_name=name,
        memory_id=memory_id or uuid.uuid4(),
        content={"text": text, "source": "discord", "name": name},
        metadata={"room_key": room, "sender_key": sender},
    )


def _count_writes(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the write transactions the intake runs (room, entity, participant), not
    those that store the message itself."""
    calls = [0]
    backend = store._backend
    original: Callable[..., Any] = backend.run_write

    async def counted(work: Callable[..., Any]) -> Any:
        if work.__qualname__.startswith("Intake."):
            calls[0] += 1
        return await original(work)

    monkeypatch.setattr(store._intake.backend, "run_write", counted)
    assert store._intake.backend is backend
    return calls


async def test_first_arrival_records_room_sender_participant_and_message(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await store.ensure_agent("tester")
    writes = _count_writes(store, monkeypatch)
    arrival = _arrival("Our office cat is called Miso")
    recorded = await store.record_message(agent, arrival, embed=True)
    assert writes[0] == 1  # room + entity + participant in one transaction
    assert not recorded.seen_before
    assert recorded.room.id == stable_id("discord", "room", "c1", agent)
    assert recorded.room.name == "#c1" and recorded.room.source == "discord"
    assert recorded.entity.id == stable_id("discord", "entity", "42")
    assert recorded.entity.names == ["alice"]
    assert [e.id for e in await store.participants(recorded.room.id)] == [recorded.entity.id]
    assert await store.find_room(agent, "discord", "c1") == recorded.room
    memory = recorded.memory
    assert memory.id == arrival.memory_id and memory.kind == MemoryKind.MESSAGE
    assert memory.room_id == recorded.room.id and memory.entity_id == recorded.entity.id
    assert memory.content == arrival.content and memory.metadata == arrival.metadata
    stored = await store.get(arrival.memory_id)
    assert stored is not None and stored.text == "Our office cat is called Miso"
    assert stored.embedding is not None  # embedded
    hits = await store.search("what is the kitten called", agent_id=agent, k=1)
    assert hits[0].memory.id == arrival.memory_id

    again = await store.record_message(agent, _arrival("and she naps at noon"), embed=True)
    assert writes[0] == 1  # room, sender and participant cached: no intake write
    assert again.room == recorded.room and again.entity == recorded.entity
    assert await store.count(room_id=recorded.room.id) == 2


async def test_a_replayed_id_is_seen_before_and_returns_the_stored_row(
    store: MemoryStore,
) -> None:
    agent = await store.ensure_agent("tester")
    message_id = stable_id("discord", "message", "m1", agent)
    first = await store.record_message(agent, _arrival("hello", memory_id=message_id), embed=True)
    replay = await store.record_message(
        agent, _arrival("hello (edited)", memory_id=message_id), embed=True
    )
    assert not first.seen_before and replay.seen_before
    assert replay.memory.id == message_id and replay.memory.text == "hello"  # the stored row
    assert await store.count(room_id=first.room.id) == 1

    fresh = MemoryStore(store._backend, store.embedder)  # another process: nothing cached
    replayed = await fresh.record_message(
        agent, _arrival("hello", memory_id=message_id), embed=True
    )
    assert replayed.seen_before and replayed.memory.text == "hello"


async def test_an_empty_text_is_stored_without_a_vector_when_not_embedded(
    store: MemoryStore,
) -> None:
    agent = await store.ensure_agent("tester")
    recorded = await store.record_message(agent, _arrival(""), embed=False)
    stored = await store.get(recorded.memory.id)
    assert stored is not None and stored.embedding is None


async def test_a_renamed_sender_is_ensured_again(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await store.ensure_agent("tester")
    writes = _count_writes(store, monkeypatch)
    first = await store.record_message(agent, _arrival("hi", name="alice"), embed=False)
    renamed = await store.record_message(agent, _arrival("hi again", name="Alice W."), embed=False)
    assert writes[0] == 2  # the new name is written
    assert renamed.entity.id == first.entity.id
    assert renamed.entity.names == ["alice", "Alice W."]
    entity = await store.get_entity(first.entity.id)
    assert entity is not None and entity.names == ["alice", "Alice W."]
    await store.record_message(agent, _arrival("still me", name="Alice W."), embed=False)
    assert writes[0] == 2  # the new name is remembered
    assert [e.id for e in await store.participants(first.room.id)] == [first.entity.id]


async def test_the_intake_cache_is_bounded_and_forgets_the_least_recently_used(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert INTAKE_CACHE_SIZE == 10_000
    agent = await store.ensure_agent("tester")
    store._intake = Intake(store._backend, cap=2)
    writes = _count_writes(store, monkeypatch)
    await store.record_message(agent, _arrival("a", room="A"), embed=False)
    await store.record_message(agent, _arrival("b", room="B"), embed=False)
    await store.record_message(agent, _arrival("a again", room="A"), embed=False)  # A is newest
    assert writes[0] == 2
    await store.record_message(agent, _arrival("c", room="C"), embed=False)  # evicts B, not A
    rooms = store._intake.rooms
    assert len(rooms) == 2
    assert (agent, "discord", "A") in rooms and (agent, "discord", "C") in rooms
    assert (agent, "discord", "B") not in rooms
    assert writes[0] == 3
    await store.record_message(agent, _arrival("a once more", room="A"), embed=False)
    assert writes[0] == 3  # still cached
    back = await store.record_message(agent, _arrival("b again", room="B"), embed=False)
    assert writes[0] == 4  # forgotten, so ensured again: the same room
    assert back.room.id == stable_id("discord", "room", "B", agent)
    assert len(store._intake.participants) == 2 and len(store._intake.entities) == 1


def test_lru_evicts_oldest_one_at_a_time() -> None:
    cache: LRU[str, int] = LRU(3)
    for i, key in enumerate("abcd"):
        cache.put(key, i)
    assert "a" not in cache and len(cache) == 3
    assert cache.get("b") == 1  # b is now the most recently used
    cache.put("e", 4)
    assert "c" not in cache and "b" in cache and "d" in cache and "e" in cache


class _SlowEmbedder(HashEmbedder):
    """A remote-like embedder whose request waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.started.set()
        await self.release.wait()
        return await super().embed(texts)


async def test_the_embedding_overlaps_the_room_and_sender_writes(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedding that waits (remote, or the local model's first load) starts before the
    room and sender rows are written: they are stored while it is still under way, and
    the message is embedded once."""
    embedder = _SlowEmbedder()
    store = await MemoryStore.open(db_url, embedder=embedder)
    original = store._intake.ensure

    async def ensure(*args: Any) -> Any:
        # Storing the room and sender waits for the embedding to have started: it had
        # not, before, until they were written.
        await asyncio.wait_for(embedder.started.wait(), 5)
        return await original(*args)

    monkeypatch.setattr(store._intake, "ensure", ensure)
    try:
        agent = await store.ensure_agent("tester")
        arrival = _arrival("Our office cat is called Miso")
        task = asyncio.create_task(store.record_message(agent, arrival, embed=True))
        await asyncio.wait_for(embedder.started.wait(), 5)
        room_id = stable_id("discord", "room", "c1", agent)
        for _ in range(200):
            if await store.get_room(room_id) is not None:
                break
            await asyncio.sleep(0.01)
        assert await store.get_room(room_id) is not None, "written while embedding"
        assert not task.done()
        embedder.release.set()
        recorded = await asyncio.wait_for(task, 5)
        stored = await store.get(recorded.memory.id)
        assert stored is not None and stored.embedding is not None
        assert embedder.calls == [["Our office cat is called Miso"]], "embedded once"
    finally:
        embedder.release.set()
        await store.close()


async def test_a_failed_intake_cancels_the_early_embedding(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = _SlowEmbedder()
    store.embedder = embedder
    agent = await store.ensure_agent("tester")

    async def fail(*args: object) -> None:
        await asyncio.wait_for(embedder.started.wait(), 5)
        raise ConnectionError("database gone")

    monkeypatch.setattr(store._intake, "ensure", fail)
    with pytest.raises(ConnectionError):
        await store.record_message(agent, _arrival("hello there"), embed=True)
    assert embedder.calls == [], "the embedding was cancelled, not finished"
