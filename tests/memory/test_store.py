"""MemoryStore against real databases: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from carrier_cli.errors import InputError
from carrier_cli.memory.migrate import head_revisions, schema_state
from carrier_cli.memory.store import EmbeddingModelMismatch, MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind, stable_id
from tests.memory.conftest import HashEmbedder

FACTS = [
    "Our office cat is called Miso",
    "The deployment pipeline runs on Kubernetes every Tuesday",
    "Alice prefers green tea over coffee in the morning",
    "The quarterly budget review is scheduled for March",
    "Bob's favourite programming language is Rust",
]


async def _agent(store: MemoryStore) -> uuid.UUID:
    return await store.ensure_agent("tester")


def _fact(agent: uuid.UUID, text_value: str, **kw: object) -> Memory:
    return Memory(agent_id=agent, content={"text": text_value}, kind=MemoryKind.FACT, **kw)  # type: ignore[arg-type]


async def test_fresh_database_is_created_at_head(store: MemoryStore) -> None:
    state = await schema_state(store.engine)
    assert state.status == "current"
    assert set(state.current) == set(head_revisions())
    counts = await store.table_counts()
    assert set(counts) >= {
        "agents",
        "entities",
        "rooms",
        "participants",
        "memories",
        "relationships",
        "cache",
    }
    assert all(v == 0 for v in counts.values())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("feline", FACTS[0]),
        ("what is the name of the kitten", FACTS[0]),
        ("which drink does Alice like", FACTS[2]),
    ],
)
async def test_semantic_search_ranks_the_right_memory_first(
    store: MemoryStore, query: str, expected: str
) -> None:
    agent = await _agent(store)
    await store.add_many([_fact(agent, f) for f in FACTS])
    hits = await store.search(query, agent_id=agent, k=3)
    assert hits[0].memory.text == expected
    assert hits[0].score > hits[1].score
    assert all(-1.0 <= h.score <= 1.0 for h in hits)


async def test_add_is_idempotent_on_id_and_ids_are_deterministic(store: MemoryStore) -> None:
    agent = await _agent(store)
    room = await store.ensure_room(agent, "discord", "chan-1", "general")
    message_id = stable_id("discord", "message", "98765", agent)
    first = Memory(id=message_id, agent_id=agent, room_id=room.id, content={"text": "hello there"})
    await store.add(first)
    replay = Memory(id=message_id, agent_id=agent, room_id=room.id, content={"text": "changed"})
    again = await store.add(replay)
    assert again.text == "hello there"
    assert await store.count(agent_id=agent) == 1
    stored = await store.get(message_id)
    assert stored is not None and stored.embedding is not None and len(stored.embedding) == 256
    assert stored.embedding_model == store.embedder.model_id
    assert stored.created_at is not None and stored.created_at.tzinfo is not None


async def test_near_duplicates_in_the_same_room_are_not_unique(store: MemoryStore) -> None:
    agent = await _agent(store)
    room_a = await store.ensure_room(agent, "terminal", "a")
    room_b = await store.ensure_room(agent, "terminal", "b")
    one = await store.add(_fact(agent, "The office cat is called Miso", room_id=room_a.id))
    two = await store.add(_fact(agent, "the office cat is called Miso!", room_id=room_a.id))
    other_room = await store.add(_fact(agent, "The office cat is called Miso", room_id=room_b.id))
    different = await store.add(_fact(agent, "Deploys happen on Tuesday", room_id=room_a.id))
    assert one.unique and not two.unique and other_room.unique and different.unique
    # within one batch too
    batch = await store.add_many(
        [
            _fact(agent, "Standup is at nine", room_id=room_b.id),
            _fact(agent, "Standup is at nine.", room_id=room_b.id),
        ]
    )
    assert [m.unique for m in batch] == [True, False]
    hits = await store.search("office cat", agent_id=agent, room_id=room_a.id, unique_only=True)
    assert two.id not in {h.memory.id for h in hits} and one.id in {h.memory.id for h in hits}


async def test_empty_text_is_stored_without_a_vector_and_never_matches(store: MemoryStore) -> None:
    agent = await _agent(store)
    empty = await store.add(_fact(agent, ""))
    blank = await store.add(Memory(agent_id=agent, content={"text": "   "}))
    missing = await store.add(Memory(agent_id=agent, content={"attachments": []}))
    for memory in (empty, blank, missing):
        stored = await store.get(memory.id)
        assert stored is not None and stored.embedding is None and stored.embedding_model is None
    assert await store.search("anything at all", agent_id=agent) == []
    await store.add(_fact(agent, "a real fact about cats"))
    hits = await store.search("cats", agent_id=agent, k=10)
    assert [h.memory.text for h in hits] == ["a real fact about cats"]
    assert await store.search("", agent_id=agent) == []


async def test_search_filters(store: MemoryStore) -> None:
    agent = await _agent(store)
    other_agent = await store.ensure_agent("other")
    room = await store.ensure_room(agent, "terminal", "r1")
    alice = await store.ensure_entity("discord", "1", "alice")
    old = datetime(2020, 1, 1, tzinfo=UTC)
    await store.add_many(
        [
            _fact(agent, "cats are great pets", room_id=room.id, entity_id=alice.id),
            Memory(agent_id=agent, content={"text": "cats purr loudly"}, room_id=room.id),
            _fact(agent, "cats sleep all day", created_at=old),
            _fact(other_agent, "cats chase mice"),
        ]
    )
    texts = lambda hits: {h.memory.text for h in hits}  # noqa: E731
    assert texts(await store.search("cats", agent_id=agent)) == {
        "cats are great pets",
        "cats purr loudly",
        "cats sleep all day",
    }
    assert texts(await store.search("cats", agent_id=agent, kinds=[MemoryKind.MESSAGE])) == {
        "cats purr loudly"
    }
    assert texts(await store.search("cats", room_id=room.id, kinds=["fact"])) == {
        "cats are great pets"
    }
    assert texts(await store.search("cats", entity_id=alice.id)) == {"cats are great pets"}
    assert texts(await store.search("cats", agent_id=agent, until=old + timedelta(days=1))) == {
        "cats sleep all day"
    }
    recent = await store.search("cats", agent_id=agent, since=old + timedelta(days=1))
    assert "cats sleep all day" not in texts(recent) and len(recent) == 2
    assert len(await store.search("cats", k=2)) == 2
    assert await store.search("cats", threshold=0.999) == []
    assert await store.search("cats", room_id=uuid.uuid4()) == []
    scores = [h.score for h in await store.search("cats", k=10)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4


async def test_recent_list_count_delete(store: MemoryStore) -> None:
    agent = await _agent(store)
    room = await store.ensure_room(agent, "terminal", "main")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        Memory(
            agent_id=agent,
            room_id=room.id,
            content={"text": f"message {i}"},
            created_at=base + timedelta(seconds=i),
        )
        for i in range(40)
    ]
    await store.add_many(messages[::-1])
    await store.add(_fact(agent, "a fact in the room", room_id=room.id))
    last = await store.recent(room.id, 32)
    assert [m.text for m in last] == [f"message {i}" for i in range(8, 40)]
    assert await store.count(agent_id=agent) == 41
    assert await store.count(agent_id=agent, kinds=[MemoryKind.FACT]) == 1
    listed = await store.list(agent_id=agent, kinds=[MemoryKind.MESSAGE], limit=5)
    assert [m.text for m in listed] == [f"message {i}" for i in range(39, 34, -1)]
    page2 = await store.list(agent_id=agent, kinds=[MemoryKind.MESSAGE], limit=5, offset=5)
    assert page2[0].text == "message 34"
    assert await store.delete([messages[39].id, messages[38].id, uuid.uuid4()]) == 2
    assert (await store.recent(room.id, 1))[0].text == "message 37"
    assert await store.get(messages[39].id) is None
    hits = await store.search("message 39", agent_id=agent, k=50)
    assert messages[39].id not in {h.memory.id for h in hits}


async def test_entities_rooms_participants_relationships_cache(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await _agent(store)
    alice = await store.ensure_entity("discord", "42", "alice")
    alice2 = await store.ensure_entity("discord", "42", "Alice W.", {"bot": False})
    assert alice2.id == alice.id == stable_id("discord", "entity", "42")
    assert alice2.names == ["alice", "Alice W."] and alice2.metadata == {"bot": False}
    room1 = await store.ensure_room(agent, "discord", "c1", "general")
    room2 = await store.ensure_room(agent, "discord", "c2", "random")
    term = await store.ensure_room(agent, "terminal", "main")
    assert room1.id == stable_id("discord", "room", "c1", agent)
    assert (await store.find_room(agent, "discord", "c1")) == room1
    await store.ensure_participant(room1.id, alice.id)
    await store.ensure_participant(room1.id, alice.id)
    assert [e.id for e in await store.participants(room1.id)] == [alice.id]
    await store.add(Memory(agent_id=agent, room_id=room1.id, content={"text": "latest"}))
    rooms = await store.list_rooms(agent, source="discord")
    assert [r.id for r in rooms] == [room1.id, room2.id]
    assert term.id in {r.id for r in await store.list_rooms(agent)}
    bob = await store.ensure_entity("discord", "43", "bob")
    await store.add_relationship(agent, alice.id, bob.id, "friend", {"since": 2024})
    await store.add_relationship(agent, alice.id, bob.id, "friend")
    rels = await store.relationships(agent, bob.id)
    assert len(rels) == 1 and rels[0]["strength"] == 2.0
    await store.cache_set("k", {"nested": [1, 2]})
    assert await store.cache_get("k") == {"nested": [1, 2]}
    # The store's clock is held still, then moved past the TTL: the read right after the
    # write must see the value however slow the machine is, and no real waiting is needed.
    clock = [datetime.now(UTC)]
    monkeypatch.setattr("carrier_cli.memory.sqlbase.utcnow", lambda: clock[0])
    await store.cache_set("k", "replaced", ttl=0.05)
    assert await store.cache_get("k") == "replaced"
    clock[0] += timedelta(seconds=0.1)
    assert await store.cache_get("k") is None
    assert await store.cache_get("never") is None


async def test_cache_set_many_writes_every_entry_in_one_transaction(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [datetime.now(UTC)]
    monkeypatch.setattr("carrier_cli.memory.sqlbase.utcnow", lambda: clock[0])
    monkeypatch.setattr("carrier_cli.memory.sqlite.backend.utcnow", lambda: clock[0])
    await store.cache_set("old", "before")
    await store.cache_set_many([])
    await store.cache_set_many(
        [
            ("a", {"nested": [1, "é"]}, 60.0),
            ("old", "replaced", None),
            ("short", 3, 0.05),
            ("a", {"last": True}, 60.0),  # the later entry for a key wins
        ]
    )
    assert await store.cache_get("a") == {"last": True}
    assert await store.cache_get("old") == "replaced"
    assert await store.cache_get("short") == 3
    clock[0] += timedelta(seconds=0.1)
    assert await store.cache_get("short") is None, "each entry keeps its own TTL"
    assert await store.cache_get("a") == {"last": True}
    # All or none: an entry that cannot be stored fails the lot, and nothing is written.
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error
        await store.cache_set_many([("b", "fine", None), ("c", object(), None)])
    assert await store.cache_get("b") is None and await store.cache_get("c") is None
    await store.cache_set("b", "still writable")
    assert await store.cache_get("b") == "still writable"


async def test_a_different_embedding_model_is_refused_until_reembed(db_url: str) -> None:
    first = await MemoryStore.open(db_url)
    agent = await first.ensure_agent("tester")
    await first.add(_fact(agent, "Our office cat is called Miso"))
    await first.add(_fact(agent, ""))
    await first.close()

    other = HashEmbedder()
    second = await MemoryStore.open(db_url, embedder=other)
    try:
        with pytest.raises(EmbeddingModelMismatch) as caught:
            await second.add(_fact(agent, "another fact"))
        message = str(caught.value)
        assert "local:wordllama-l2-supercat-256" in message and "test:hash-64" in message
        assert "carrier memory reembed" in message
        with pytest.raises(EmbeddingModelMismatch):
            await second.search("cat", agent_id=agent)
        # storing without a vector is still allowed
        await second.add(_fact(agent, "kept without vector"), embed=False)
        progress: list[tuple[int, int]] = []
        assert await second.reembed(progress=lambda d, t: progress.append((d, t))) == 3
        assert progress[-1] == (3, 3)
        hits = await second.search("office cat", agent_id=agent)
        assert hits[0].memory.text == "Our office cat is called Miso"
        stored = await second.get(hits[0].memory.id)
        assert stored is not None and stored.embedding_model == "test:hash-64"
        assert stored.embedding is not None and len(stored.embedding) == 64
        assert await second.stored_models() == {"test:hash-64": 2}
    finally:
        await second.close()
    back = await MemoryStore.open(db_url)
    try:
        with pytest.raises(InputError, match="test:hash-64"):
            await back.search("cat")
    finally:
        await back.close()


async def test_identical_text_is_embedded_once(db_url: str) -> None:
    embedder = HashEmbedder()
    store = await MemoryStore.open(db_url, embedder=embedder)
    agent = await store.ensure_agent("tester")
    await store.add_many(
        [_fact(agent, "same words"), _fact(agent, "same words"), _fact(agent, "other words")]
    )
    await store.add(_fact(agent, "same words"))
    assert sorted(t for call in embedder.calls for t in call) == ["other words", "same words"]
    await store.close()
    fresh_embedder = HashEmbedder()
    reopened = await MemoryStore.open(db_url, embedder=fresh_embedder)
    await reopened.add(_fact(agent, "other words"))  # found by content hash in the database
    assert fresh_embedder.calls == []
    await reopened.close()


async def test_precomputed_vectors_are_normalised_and_checked(store: MemoryStore) -> None:
    agent = await _agent(store)
    vector = [3.0] + [0.0] * 255
    memory = await store.add(_fact(agent, "precomputed", embedding=vector))
    stored = await store.get(memory.id)
    assert stored is not None and stored.embedding is not None
    assert abs(stored.embedding[0] - 1.0) < 1e-6
    hits = await store.search([1.0] + [0.0] * 255, agent_id=agent)
    assert hits[0].memory.id == memory.id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EmbeddingModelMismatch):
        await store.add(_fact(agent, "wrong size", embedding=[1.0] * 10))


async def test_opening_an_older_or_newer_schema_says_what_to_do(db_url: str) -> None:
    store = await MemoryStore.open(db_url)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM alembic_version"))
    await store.close()
    with pytest.raises(InputError, match="carrier db upgrade"):
        await MemoryStore.open(db_url)
    from carrier_cli.memory.backends import make_engine
    from carrier_cli.memory.urls import normalise_url

    engine = make_engine(normalise_url(db_url))
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('9999_future')"))
    await engine.dispose()
    with pytest.raises(InputError, match="newer Carrier"):
        await MemoryStore.open(db_url)


async def test_create_false_refuses_an_empty_database(db_url: str) -> None:
    with pytest.raises(InputError, match="carrier db init"):
        await MemoryStore.open(db_url, create=False)


async def test_concurrent_searches_and_adds_in_one_process(store: MemoryStore) -> None:
    agent = await _agent(store)
    room = await store.ensure_room(agent, "terminal", "busy")
    await store.add(_fact(agent, "seed memory about gardening"))
    texts = [f"note {i} about topic {i % 5} in the garden" for i in range(30)]
    results = await asyncio.gather(
        *[store.add(Memory(agent_id=agent, room_id=room.id, content={"text": t})) for t in texts],
        *[store.search("garden notes", agent_id=agent, k=50, threshold=-1) for _ in range(10)],
    )
    assert len(results) == 40
    hits = await store.search("garden", agent_id=agent, k=100, threshold=-1)
    ids = [h.memory.id for h in hits]
    assert len(ids) == len(set(ids)) == 31  # every memory once, none twice


async def test_concurrent_stored_model_reads_share_one_query(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No vectors yet, so nothing is cached: callers asking at once (a burst's first
    messages) share one read of the database instead of one each."""
    backend = store._backend
    original = backend.stored_model
    reads = [0]

    async def counted() -> tuple[str, int] | None:
        reads[0] += 1
        await asyncio.sleep(0.05)
        return await original()

    monkeypatch.setattr(backend, "stored_model", counted)
    assert await asyncio.gather(*(store.stored_model() for _ in range(20))) == [None] * 20
    assert reads[0] == 1
    agent = await _agent(store)
    await store.add(_fact(agent, "Our office cat is called Miso"))
    reads[0] = 0
    found = await asyncio.gather(*(store.stored_model() for _ in range(5)))
    assert found[0] is not None and len(set(found)) == 1
    assert reads[0] <= 1, "asked again once vectors exist, by one of them at most"
    asked = reads[0]
    assert await store.stored_model() == found[0] and reads[0] == asked, "then cached"
