"""forget_person: a person's facts (and with scope "all" their messages) go, nobody else's,
on both backends (the `store` fixture runs each test on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest

from carrier_cli.memory.forget import PAGE, count_about, forget_person, person_entity_id
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Arrival, Memory, MemoryKind, stable_id

ALICE, BOB = "400000000000000001", "400000000000000002"


async def _seed(store: MemoryStore) -> tuple[uuid.UUID, uuid.UUID]:
    agent = await store.ensure_agent("Carrier")
    for n, who in enumerate([ALICE, BOB, ALICE]):
        await store.record_message(
            agent,
            Arrival(
                source="discord",
                room_key="200000000000000001",
                room_name="Guild #general",
                sender_key=who,
                sender_name=who[-1],
                memory_id=stable_id("discord", "message", n),
                content={"text": f"message {n} from {who[-1]}", "source": "discord"},
                metadata={},
            ),
            embed=False,
        )
    reply = Memory(agent_id=agent, content={"text": "agent reply"}, entity_id=agent)
    await store.add(reply, embed=False, dedupe=False)
    for who, fact in [(ALICE, "likes tea"), (ALICE, "lives in Lyon"), (BOB, "plays chess")]:
        memory = Memory(
            agent_id=agent,
            kind=MemoryKind.FACT,
            content={"text": fact},
            entity_id=person_entity_id("discord", who),
        )
        await store.add(memory, embed=False, dedupe=False)
    return agent, reply.id


async def _texts(store: MemoryStore, agent: uuid.UUID, kind: MemoryKind) -> set[str]:
    return {m.text for m in await store.list(agent_id=agent, kinds=[kind], limit=None)}


async def test_facts_scope_deletes_only_the_askers_facts(store: MemoryStore) -> None:
    agent, _ = await _seed(store)
    alice = person_entity_id("discord", ALICE)
    assert await count_about(store, agent, alice, MemoryKind.FACT) == 2
    done = await forget_person(store, agent, platform="discord", external_id=ALICE)
    assert (done.facts, done.messages, done.total) == (2, 0, 2)
    assert await _texts(store, agent, MemoryKind.FACT) == {"plays chess"}
    assert len(await _texts(store, agent, MemoryKind.MESSAGE)) == 4, "messages stay"


async def test_all_scope_deletes_their_messages_too_but_not_the_agents(
    store: MemoryStore,
) -> None:
    agent, reply_id = await _seed(store)
    done = await forget_person(
        store,
        agent,
        platform="discord",
        external_id=ALICE,
        scope="all",
    )
    assert (done.facts, done.messages) == (2, 2)
    assert await _texts(store, agent, MemoryKind.MESSAGE) == {"message 1 from 2", "agent reply"}
    assert await store.get(reply_id) is not None
    again = await forget_person(store, agent, platform="discord", external_id=ALICE, scope="all")
    assert again.total == 0, "a second /forget finds nothing"


async def test_more_than_a_page_is_deleted(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    alice = person_entity_id("discord", ALICE)
    facts = [
        Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": f"f{i}"}, entity_id=alice)
        for i in range(PAGE + 7)
    ]
    await store.add_many(facts, embed=False, dedupe=False)
    assert await count_about(store, agent, alice, MemoryKind.FACT) == PAGE + 7
    done = await forget_person(store, agent, platform="discord", external_id=ALICE)
    assert done.facts == PAGE + 7
    assert await count_about(store, agent, alice, MemoryKind.FACT) == 0


async def test_unknown_scope_is_refused(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    with pytest.raises(ValueError, match="scope"):
        await forget_person(store, agent, platform="discord", external_id=ALICE, scope="x")  # type: ignore[arg-type]


async def test_forgotten_facts_are_gone_from_search_too(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    alice = person_entity_id("discord", ALICE)
    fact = Memory(
        agent_id=agent, kind=MemoryKind.FACT, content={"text": "Alice likes tea"}, entity_id=alice
    )
    await store.add(fact, embed=True, dedupe=False)
    assert [h.memory.id for h in await store.search("likes tea", agent_id=agent)] == [fact.id]
    await forget_person(store, agent, platform="discord", external_id=ALICE)
    assert await store.search("likes tea", agent_id=agent) == []
