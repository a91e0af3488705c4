"""Slash commands end to end in-process: real discord.py (app_commands, ui.View, the webhook
adapter) against the fake Discord's interactions (tests/support/fake_interactions.py), with
a stand-in runtime whose turns the test scripts and a real MemoryStore for /forget and
/memory (its SQLite and PostgreSQL behaviour is tests/memory/test_forget.py's)."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character import Character
from carrier_cli.memory.forget import person_entity_id
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Arrival, Memory, MemoryKind, stable_id
from carrier_cli.runtime.types import IncomingMessage
from tests.clients.discord.replies import long_reply
from tests.clients.discord.test_bot import (
    GUILD,
    Running,
    StandInRuntime,
    make_settings,
    server,
    start_bot,
)
from tests.clients.discord.test_split import check_invariants
from tests.support.fake_discord import FakeDiscordServer
from tests.support.fake_interactions import FLAG_EPHEMERAL, MANAGE_GUILD, InteractionRecord

__all__ = ["server"]  # the fixture, imported for this module's tests

ALICE, BOB = "400000000000000001", "400000000000000002"


@dataclass
class ModelChoice:
    provider: str = "openai"
    large: str = "gpt-4o-mini"


@dataclass
class MemoryRuntime(StandInRuntime):
    """The stand-in runtime with what the commands read: a store, an agent, a model."""

    store: Any = None
    agent_id: uuid.UUID | None = None
    model_config: ModelChoice = field(default_factory=ModelChoice)
    forgotten: list[uuid.UUID] = field(default_factory=list)

    async def forget_facts_everywhere(self, entity_id: uuid.UUID | None = None) -> None:
        assert entity_id is not None
        self.forgotten.append(entity_id)


def character(**discord: Any) -> Character:
    return Character.model_validate(
        {
            "name": "Carrier",
            "bio": ["A careful assistant who remembers.", "Second line."],
            "clients": {"discord": discord},
        }
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with await MemoryStore.open(f"sqlite:///{tmp_path / 'memory.db'}") as opened:
        yield opened


@pytest.fixture
async def either_store(db_url: str) -> AsyncIterator[MemoryStore]:
    """SQLite and PostgreSQL (tests/support/postgres.py's `db_url`): /forget's tests."""
    async with await MemoryStore.open(db_url) as opened:
        yield opened


async def answer(message: IncomingMessage) -> str:
    if message.text == "long":
        return long_reply()
    return f"Answer to {message.text}"


async def start(
    server: FakeDiscordServer, store: MemoryStore, **discord: Any
) -> tuple[Running, MemoryRuntime]:
    runtime = MemoryRuntime(character(**discord), answer, store=store)
    runtime.agent_id = await store.ensure_agent("Carrier")
    running = await start_bot(server, runtime, make_settings(server))
    return running, runtime


async def stop(running: Running) -> None:
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def answered(record: InteractionRecord, count: int = 1) -> list[str]:
    """Texts of the response once `count` messages (the thinking one filled in) are there."""

    def ready() -> bool:
        filled = [m for m in record.messages if not int(m.get("flags") or 0) & (1 << 7)]
        return len(filled) >= count

    await asyncio.wait_for(_until(ready), 10)
    return record.texts


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_ask_defers_then_answers_as_a_follow_up_through_the_runtime(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, runtime = await start(server, store)
    record = await server.interactions.adispatch_command("ask", {"text": "what is Carrier?"})
    texts = await answered(record)
    assert texts == ["Answer to what is Carrier?"]
    first = record.callbacks[0]
    assert first["type"] == 5, "deferred (thinking) first"
    assert record.callback_times[0] - record.created < 3.0
    # The answer went through discord.py's webhook adapter to the configured base (the fake).
    hook = f"/api/v10/webhooks/{server.app_id}/{record.token}"
    assert ("POST", hook) in [(method, path) for method, path, _ in server.requests]
    message = runtime.seen[-1]
    assert (message.sender_key, message.room_key) == (ALICE, server.channel_id)
    assert message.sender_name == "Alice" and message.message_key == record.id
    assert message.mentions_agent and message.source == "discord"
    await stop(running)


async def test_a_long_answer_is_split_into_follow_ups(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, _ = await start(server, store)
    record = await server.interactions.adispatch_command("ask", {"text": "long"})
    await answered(record, 3)
    await asyncio.sleep(0.2)
    texts = record.texts
    assert len(texts) >= 3 and all(len(t) <= 2000 for t in texts)
    check_invariants(long_reply(), texts)
    assert len(record.followups) == len(texts) - 1, "the first chunk filled the thinking message"
    await stop(running)


async def _seed_facts(store: MemoryStore, agent_id: uuid.UUID) -> None:
    for who, fact in [(ALICE, "Alice likes tea"), (ALICE, "Alice lives in Lyon"), (BOB, "Bob")]:
        entity = person_entity_id("discord", who)
        await store.add(
            Memory(
                agent_id=agent_id, kind=MemoryKind.FACT, content={"text": fact}, entity_id=entity
            ),
            embed=True,
            dedupe=False,
        )
    await store.record_message(
        agent_id,
        Arrival(
            source="discord",
            room_key=CHANNEL,
            room_name="Guild #channel-0",
            sender_key=ALICE,
            sender_name="Alice",
            memory_id=stable_id("discord", "message", "m1"),
            content={"text": "hello there", "source": "discord"},
            metadata={},
        ),
        embed=True,
    )


CHANNEL = "200000000000000001"


async def _facts(store: MemoryStore, agent_id: uuid.UUID) -> set[str]:
    found = await store.list(agent_id=agent_id, kinds=[MemoryKind.FACT], limit=None)
    return {m.text for m in found}


async def test_forget_deletes_the_askers_facts_after_the_button(
    server: FakeDiscordServer, either_store: MemoryStore
) -> None:
    store = either_store
    running, runtime = await start(server, store)
    assert runtime.agent_id is not None
    await _seed_facts(store, runtime.agent_id)
    fake = server.interactions
    record = await fake.adispatch_command("forget")
    await answered(record)
    assert record.original is not None and record.original["flags"] & FLAG_EPHEMERAL
    assert "2 facts" in record.texts[0], record.texts
    assert await _facts(store, runtime.agent_id) == {
        "Alice likes tea",
        "Alice lives in Lyon",
        "Bob",
    }
    yes = next(b for b in record.button_ids() if b.endswith(":yes"))
    press = await fake.adispatch_component(record, yes)
    await fake.wait_for(lambda: press.edits and "Done" in str(press.edits[-1].get("content")))
    assert press.callbacks[0]["type"] == 7, "the button's message is updated at once"
    assert await _facts(store, runtime.agent_id) == {"Bob"}
    assert len(await store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.MESSAGE])) == 1
    assert runtime.forgotten == [person_entity_id("discord", ALICE)], "fact cache dropped"
    assert "forgot 2 facts" in str(press.edits[-1]["content"])
    await stop(running)


async def test_forget_all_cancelled_keeps_everything_then_confirmed_deletes_messages(
    server: FakeDiscordServer, either_store: MemoryStore
) -> None:
    store = either_store
    running, runtime = await start(server, store)
    assert runtime.agent_id is not None
    await _seed_facts(store, runtime.agent_id)
    fake = server.interactions
    record = await fake.adispatch_command("forget", {"scope": "all"})
    await answered(record)
    assert "2 facts and 1 message you sent" in record.texts[0], record.texts
    no = next(b for b in record.button_ids() if b.endswith(":no"))
    press = await fake.adispatch_component(record, no)
    await fake.wait_for(lambda: press.callbacks)
    assert "nothing was deleted" in press.callbacks[0]["data"]["content"]
    assert len(await _facts(store, runtime.agent_id)) == 3
    record = await fake.adispatch_command("forget", {"scope": "all"})
    await answered(record)
    yes = next(b for b in record.button_ids() if b.endswith(":yes"))
    press = await fake.adispatch_component(record, yes)
    await fake.wait_for(lambda: press.edits and "Done" in str(press.edits[-1].get("content")))
    assert "2 facts and 1 message" in str(press.edits[-1]["content"])
    assert await _facts(store, runtime.agent_id) == {"Bob"}
    assert await store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.MESSAGE]) == []
    await stop(running)


async def test_an_expired_confirmation_deletes_nothing_and_its_button_says_so(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, runtime = await start(server, store)
    assert runtime.agent_id is not None
    running.bot.slash.confirm_seconds = 0.3
    await _seed_facts(store, runtime.agent_id)
    fake = server.interactions
    record = await fake.adispatch_command("forget")
    await answered(record)
    yes = next(b for b in record.button_ids() if b.endswith(":yes"))
    shown = copy.deepcopy(record.message_with(yes))  # what a client that did not refresh shows
    await fake.wait_for(lambda: "not confirmed in time" in record.texts[0], what="the expiry")
    assert record.button_ids() == [], "the buttons are removed"
    press = await fake.adispatch_component(record, yes, message=shown)
    await fake.wait_for(lambda: press.callbacks)
    assert press.callbacks[0]["data"]["flags"] == FLAG_EPHEMERAL
    assert "expired" in press.callbacks[0]["data"]["content"], "told, not Discord's silence"
    assert len(await _facts(store, runtime.agent_id)) == 3
    await stop(running)


async def test_someone_else_cannot_press_the_forget_button(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, runtime = await start(server, store)
    assert runtime.agent_id is not None
    await _seed_facts(store, runtime.agent_id)
    fake = server.interactions
    record = await fake.adispatch_command("forget")
    await answered(record)
    yes = next(b for b in record.button_ids() if b.endswith(":yes"))
    press = await fake.adispatch_component(record, yes, user_id=BOB, user_name="bob")
    await fake.wait_for(lambda: press.callbacks)
    assert "Only the person who ran /forget" in press.callbacks[0]["data"]["content"]
    assert len(await _facts(store, runtime.agent_id)) == 3
    await stop(running)


async def test_memory_is_refused_without_permission_and_allowed_with_the_role(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    fake = server.interactions
    role = fake.add_role("Archivist")  # in GUILD_CREATE, before the bot connects
    running, runtime = await start(server, store, memory_roles=["archivist"])
    assert runtime.agent_id is not None
    await _seed_facts(store, runtime.agent_id)

    refused = await fake.adispatch_command("memory", {"query": "tea"})
    await fake.wait_for(lambda: refused.callbacks)
    body = refused.callbacks[0]
    assert body["type"] == 4 and body["data"]["flags"] == FLAG_EPHEMERAL
    assert "Manage Server" in body["data"]["content"] and "archivist" in body["data"]["content"]

    with_role = await fake.adispatch_command("memory", {"query": "tea"}, roles=[role])
    texts = await answered(with_role)
    assert with_role.callbacks[0]["data"]["flags"] & FLAG_EPHEMERAL
    assert "Alice likes tea" in texts[0]

    manager = await fake.adispatch_command(
        "memory", {"query": "Lyon"}, permissions=MANAGE_GUILD, user_id=BOB, user_name="bob"
    )
    texts = await answered(manager)
    assert "Alice lives in Lyon" in texts[0]
    await stop(running)


async def test_about_shows_name_bio_and_model(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, _ = await start(server, store)
    record = await server.interactions.adispatch_command("about")
    await server.interactions.wait_for(lambda: record.callbacks)
    data = record.callbacks[0]["data"]
    assert record.callbacks[0]["type"] == 4 and data["flags"] == FLAG_EPHEMERAL
    assert "**Carrier**" in data["content"]
    assert "A careful assistant who remembers." in data["content"]
    assert "openai gpt-4o-mini" in data["content"]
    await stop(running)


async def test_guild_sync_puts_the_commands_in_each_guild(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, _ = await start(server, store, sync_commands="guild")
    fake = server.interactions
    await fake.wait_for(lambda: fake.sync_calls, what="a sync call")
    assert fake.sync_calls == [(server.app_id, GUILD, ["ask", "forget", "about", "memory"])]
    ask = next(c for c in fake.commands[(server.app_id, GUILD)] if c["name"] == "ask")
    assert ask["options"][0]["name"] == "text" and ask["options"][0]["required"]
    # A command of the synced set carries its guild_id and id: the guild copy answers it.
    record = await fake.adispatch_command("about")
    await fake.wait_for(lambda: record.callbacks)
    assert "**Carrier**" in record.callbacks[0]["data"]["content"]
    await stop(running)


async def test_global_sync_with_the_flag_setting(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    runtime = MemoryRuntime(character(), answer, store=store)
    runtime.agent_id = await store.ensure_agent("Carrier")
    running = await start_bot(server, runtime, make_settings(server, discord_sync_commands=True))
    fake = server.interactions
    await fake.wait_for(lambda: fake.sync_calls, what="a sync call")
    assert fake.sync_calls == [(server.app_id, None, ["ask", "forget", "about", "memory"])]
    await stop(running)


async def test_no_sync_by_default(server: FakeDiscordServer, store: MemoryStore) -> None:
    running, _ = await start(server, store)
    await asyncio.sleep(0.3)
    assert server.interactions.sync_calls == []
    await stop(running)


async def test_a_stale_command_gets_an_ephemeral_explanation(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="carrier_cli")
    running, _ = await start(server, store)
    record = await server.interactions.adispatch_command("summon", {"what": "x"})
    await server.interactions.wait_for(lambda: record.callbacks)
    data = record.callbacks[0]["data"]
    assert data["flags"] == FLAG_EPHEMERAL
    assert "/summon is not a command of Carrier" in data["content"]
    assert "/ask" in data["content"]
    assert f"/summon in guild {GUILD}" in caplog.text
    await stop(running)


async def test_an_expired_interaction_is_logged_with_command_and_guild(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="carrier_cli")
    running, _ = await start(server, store)
    fake = server.interactions
    fake.ack_deadline = 0.0  # every callback comes too late: 404 code 10062
    record = await fake.adispatch_command("about")
    await fake.wait_for(lambda: record.refused, what="the refused callback")
    line = await fake.wait_for(
        lambda: next((r for r in caplog.records if "/about" in r.getMessage()), None)
    )
    text = line.getMessage()
    assert line.levelno == logging.ERROR
    assert f"/about in guild {GUILD}" in text and "10062" in text and "expired" in text
    assert record.refused == [("callback", 404, 10062)], "no second attempt at a dead token"
    await stop(running)


async def test_follow_ups_past_the_token_lifetime_are_logged(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="carrier_cli")
    fake = server.interactions
    gate = asyncio.Event()

    async def slow(message: IncomingMessage) -> str:
        await gate.wait()
        return "late answer"

    runtime = MemoryRuntime(character(), slow, store=store)
    runtime.agent_id = await store.ensure_agent("Carrier")
    running = await start_bot(server, runtime, make_settings(server))
    record = await fake.adispatch_command("ask", {"text": "take your time"})
    await fake.wait_for(lambda: record.callbacks)
    fake.expire(record)  # 15 minutes pass
    gate.set()
    await fake.wait_for(lambda: record.refused, what="the refused follow-up")
    line = await fake.wait_for(
        lambda: next((r for r in caplog.records if "50027" in r.getMessage()), None)
    )
    assert "/ask in guild" in line.getMessage() and "token expired" in line.getMessage()
    await stop(running)


async def test_a_command_with_stale_options_gets_the_explanation_too(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An older /ask whose option had another name: Discord sends it, the bot's differs."""
    running, runtime = await start(server, store)
    record = await server.interactions.adispatch_command("ask", {"question": "old client"})
    await server.interactions.wait_for(lambda: record.callbacks)
    data = record.callbacks[0]["data"]
    assert data["flags"] == FLAG_EPHEMERAL
    assert "/ask" in data["content"] and "Ctrl+R" in data["content"], data["content"]
    assert runtime.seen == [], "no turn for a malformed command"
    await stop(running)


async def test_ask_follows_the_channel_rules_of_messages(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, runtime = await start(server, store, allowed_channel_ids=["299999999999999999"])
    record = await server.interactions.adispatch_command("ask", {"text": "here?"})
    await server.interactions.wait_for(lambda: record.callbacks)
    data = record.callbacks[0]["data"]
    assert data["flags"] == FLAG_EPHEMERAL and "not answer in this channel" in data["content"]
    assert runtime.seen == []
    await stop(running)


async def test_ask_in_a_dm_is_a_one_to_one_turn_and_memory_is_refused_there(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, runtime = await start(server, store)
    fake = server.interactions
    record = await fake.adispatch_command("ask", {"text": "privately"}, dm=True)
    assert await answered(record) == ["Answer to privately"]
    message = runtime.seen[-1]
    assert message.is_direct and message.room_key == record.channel_id
    assert message.room_name == "DM with Alice"
    refused = await fake.adispatch_command("memory", {"query": "x"}, dm=True)
    await fake.wait_for(lambda: refused.callbacks)
    assert "only in a server" in refused.callbacks[0]["data"]["content"]
    await stop(running)


async def test_a_guild_without_the_commands_scope_is_logged_with_the_fix(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="carrier_cli")
    server.interactions.without_commands_scope.add(GUILD)
    running, _ = await start(server, store, sync_commands="guild")
    line = await server.interactions.wait_for(
        lambda: next((r for r in caplog.records if "could not sync" in r.getMessage()), None)
    )
    assert f"to guild {GUILD}" in line.getMessage()
    assert "applications.commands" in line.getMessage() and "50001" in line.getMessage()
    assert running.bot.slash.synced == []
    await stop(running)


async def test_forget_with_nothing_stored_says_so_without_buttons(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    running, _ = await start(server, store)
    record = await server.interactions.adispatch_command("forget")
    texts = await answered(record)
    assert texts == ["Carrier has stored nothing about you: nothing to forget."]
    assert record.button_ids() == []
    await stop(running)


async def test_a_refused_answer_is_logged_and_the_user_told_privately(
    server: FakeDiscordServer, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="carrier_cli")
    running, _ = await start(server, store)
    fake = server.interactions
    fake.refuse_followups.append((403, 50013, "Missing Permissions"))
    record = await fake.adispatch_command("ask", {"text": "can you answer?"})
    texts = await answered(record)
    assert record.refused == [("followup", 403, 50013)]
    assert texts == ["Sorry, that command failed; try again in a moment."]
    line = next(r for r in caplog.records if "missing permissions" in r.getMessage())
    assert f"/ask in guild {GUILD}" in line.getMessage() and "50013" in line.getMessage()
    await stop(running)
