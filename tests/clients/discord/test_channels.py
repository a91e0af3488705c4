"""Threads, per-channel modes, history backfill, feedback and ack reactions, presence (issue
17): the real discord.py against the fake Discord on the test's loop, and the real runtime
(AgentRuntime, a scripted model) on a real memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from carrier_cli.character import Character
from carrier_cli.clients.discord.threads import open_thread
from carrier_cli.llm.base import ChatMessage
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.feedback import list_feedback
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import MemoryKind
from carrier_cli.runtime.agent import AgentRuntime
from tests.clients.discord.harness import xml_reply
from tests.clients.discord.test_bot import Running, make_settings, start_bot, wait_until
from tests.support.fake_discord import FakeDiscordServer

GUILD = "100000000000000001"
CHANNELS = [str(200000000000000001 + i) for i in range(4)]
ALICE, BOB = "400000000000000001", "400000000000000002"


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscordServer]:
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    fake = FakeDiscordServer(guilds={GUILD: CHANNELS})
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with await MemoryStore.open(f"sqlite:///{tmp_path / 'one.db'}") as opened:
        yield opened


def last_user_text(messages: list[ChatMessage]) -> str:
    return str(messages[-1].content)


def answer(messages: list[ChatMessage]) -> str:
    """The model: 'answer N' where N counts the calls so far (each reply is distinct)."""
    answer.calls += 1  # type: ignore[attr-defined]
    return xml_reply(f"answer {answer.calls}")  # type: ignore[attr-defined]


answer.calls = 0  # type: ignore[attr-defined]


@dataclass
class Bot:
    running: Running
    runtime: AgentRuntime
    model: ScriptedChatModel

    async def stop(self) -> None:
        self.running.stop.set()
        await asyncio.wait_for(self.running.task, 15)
        await self.runtime.aclose()


async def start(
    server: FakeDiscordServer,
    store: MemoryStore,
    replies: Callable[[list[ChatMessage]], str] = answer,
    **discord: Any,
) -> Bot:
    character = Character(
        name="Carrier",
        username="carrier",
        bio=["A test bot."],
        clients={"discord": discord},
        settings={"fact_interval": 1_000_000},  # no background fact calls to count
    )
    model = ScriptedChatModel(replies)
    settings = make_settings(server)
    runtime = await AgentRuntime.create(
        character, settings, store=store, model=model, model_name="large-1"
    )
    running = await start_bot(server, runtime, settings)  # type: ignore[arg-type]
    return Bot(running, runtime, model)


async def messages_in(store: MemoryStore, runtime: AgentRuntime, channel: str) -> list[str]:
    room = await store.find_room(runtime.agent_id, "discord", channel)
    if room is None:
        return []
    rows = await store.list(
        agent_id=runtime.agent_id, room_id=room.id, kinds=[MemoryKind.MESSAGE], limit=None
    )
    return sorted(m.text for m in rows)


def sent_in(server: FakeDiscordServer, channel: str) -> list[str]:
    return [m.content for m in server.sent_messages(channel)]


# -- threads -----------------------------------------------------------------------------------
async def test_a_thread_is_its_own_room_and_followed_once_mentioned(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    bot = await start(server, store, respond_only_to_mentions=True)
    mention = f"<@{server.bot_id}>"
    thread = await server.acreate_thread(CHANNELS[0], "planning")
    other = await server.acreate_thread(CHANNELS[0], "elsewhere")
    await wait_until(lambda: bot.running.bot.get_channel(int(other)) is not None)
    before = await server.adispatch_message("chatting before", channel_id=thread)
    asked = await server.adispatch_message(f"{mention} plan it", channel_id=thread)
    await wait_until(lambda: sent_in(server, thread))
    assert server.sent_messages(thread)[0].reply_to == asked["id"]
    follow = await server.adispatch_message("and then?", channel_id=thread)
    await wait_until(lambda: len(sent_in(server, thread)) >= 2)
    assert server.sent_messages(thread)[1].reply_to == follow["id"], "followed: no mention needed"
    chatter = await server.adispatch_message("not for the bot", channel_id=other)
    await asyncio.sleep(0.3)
    assert not sent_in(server, other), "an unfollowed thread in mentions mode: stored only"
    # A burst in a followed thread is answered in the order it was said.
    burst = [await server.adispatch_message(f"quick {i}", channel_id=thread) for i in range(4)]
    await wait_until(lambda: len(sent_in(server, thread)) >= 6)
    answered = [m.reply_to for m in server.sent_messages(thread)[2:]]
    assert answered == [m["id"] for m in burst]
    await bot.stop()

    in_thread = await messages_in(store, bot.runtime, thread)
    assert {"chatting before", "@Carrier plan it", "and then?", "quick 3"} <= set(in_thread)
    assert await messages_in(store, bot.runtime, other) == [chatter["content"]]
    assert await messages_in(store, bot.runtime, CHANNELS[0]) == []  # not the parent's room
    room = await store.find_room(bot.runtime.agent_id, "discord", thread)
    assert room is not None and room.name is not None and room.name.endswith("> planning")
    assert before["id"] != asked["id"]


async def test_a_thread_the_bot_was_not_told_of_takes_its_channels_mode(
    server: FakeDiscordServer, sqlite_store: MemoryStore
) -> None:
    """No THREAD_CREATE reached the bot (discord.py has no such channel): one GET
    /channels/{id} says it is a thread of a listen channel, so a mention there is stored
    and not answered."""
    listen = CHANNELS[2]
    bot = await start(server, sqlite_store, channels={listen: "listen"})
    thread = "300000000000000123"
    server.threads[thread] = server._thread_payload(thread, listen, "hidden", ALICE, private=True)
    await server.adispatch_message(f"<@{server.bot_id}> in the hidden thread", channel_id=thread)
    await wait_until(
        lambda: any(r[0] == "GET" and r[1].endswith(f"/channels/{thread}") for r in server.requests)
    )
    # The turn is queued once the answer is back; stored, it must still not be answered.
    async with asyncio.timeout(10):
        while not await messages_in(sqlite_store, bot.runtime, thread):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    await bot.stop()
    assert not server.sent_messages()
    assert await messages_in(sqlite_store, bot.runtime, thread) == ["@Carrier in the hidden thread"]


async def test_reply_in_thread_opens_a_thread_on_the_mention_and_answers_there(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    bot = await start(server, store, respond_only_to_mentions=True, reply_in_thread=True)
    asked = await server.adispatch_message(
        f"<@{server.bot_id}> can we talk about the launch?", channel_id=CHANNELS[1]
    )
    thread = asked["id"]  # Discord gives a thread opened on a message the message's id
    await wait_until(lambda: sent_in(server, thread))
    assert server.thread_routes == [(CHANNELS[1], asked["id"])]
    assert server.threads[thread]["parent_id"] == CHANNELS[1]
    assert server.threads[thread]["name"] == "can we talk about the launch?"
    assert not sent_in(server, CHANNELS[1]), "the answer is in the thread, not the channel"
    follow = await server.adispatch_message("tuesday works?", channel_id=thread)
    await wait_until(lambda: len(sent_in(server, thread)) >= 2)
    assert server.sent_messages(thread)[1].reply_to == follow["id"]
    # Plain chatter in the channel opens nothing (mentions mode: stored, not answered).
    await server.adispatch_message("unrelated", channel_id=CHANNELS[1])
    await asyncio.sleep(0.3)
    assert len(server.thread_routes) == 1 and not sent_in(server, CHANNELS[1])
    # A replayed turn (catch-up) opens no second thread: Discord refuses (160004) and the
    # bot answers in the one already there.
    client = bot.running.bot
    channel = client.get_channel(int(CHANNELS[1]))
    assert isinstance(channel, discord.TextChannel)
    again = await open_thread(await channel.fetch_message(int(asked["id"])), "again")
    assert again is not None and str(again.id) == thread and len(server.threads) == 1
    await bot.stop()
    texts = await messages_in(store, bot.runtime, thread)
    assert "@Carrier can we talk about the launch?" in texts and "tuesday works?" in texts


# -- channel modes ------------------------------------------------------------------------------
async def test_each_channel_mode(server: FakeDiscordServer, store: MemoryStore) -> None:
    always, listen, off, mentions = CHANNELS
    prompts: list[str] = []

    def model(messages: list[ChatMessage]) -> str:
        prompts.append("\n".join(str(m.content) for m in messages))
        return xml_reply("here")

    bot = await start(
        server,
        store,
        model,
        channels={
            listen: {"mode": "listen"},
            "channel-2": {"mode": "off"},  # by name (the fake names channels channel-<i>)
            mentions: {"mode": "mentions"},
        },
    )
    mention = f"<@{server.bot_id}>"
    await server.adispatch_message("listen: chatter", channel_id=listen)
    await server.adispatch_message(f"{mention} listen: even a mention", channel_id=listen)
    await server.adispatch_message("off: chatter", channel_id=off)
    await server.adispatch_message(f"{mention} off: a mention", channel_id=off)
    chatter = await server.adispatch_message("mentions: among ourselves", channel_id=mentions)
    asked = await server.adispatch_message(f"{mention} mentions: now you", channel_id=mentions)
    direct = await server.adispatch_message(f"{mention} always: hi", channel_id=always)
    await wait_until(lambda: sent_in(server, mentions) and sent_in(server, always))
    await asyncio.sleep(0.3)
    assert not sent_in(server, listen), "listen never answers"
    assert not sent_in(server, off)
    assert [m.reply_to for m in server.sent_messages(mentions)] == [asked["id"]]
    assert [m.reply_to for m in server.sent_messages(always)] == [direct["id"]]
    assert len(prompts) == 2, "no model call for listen, off or unaddressed chatter"
    assert any("mentions: among ourselves" in p for p in prompts), "stored: in the context"
    await bot.stop()

    agent = bot.runtime
    assert await messages_in(store, agent, listen) == sorted(
        ["listen: chatter", "@Carrier listen: even a mention"]
    )
    assert await messages_in(store, agent, off) == []
    assert chatter["content"] in await messages_in(store, agent, mentions)


# -- backfill -----------------------------------------------------------------------------------
async def test_backfill_stores_history_once_and_never_answers(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    always, listen, off, _ = CHANNELS
    # History from before the bot started (no session: nothing is delivered).
    for i in range(6):
        await server.adispatch_message(f"old {i}", channel_id=always)
    await server.adispatch_message(f"<@{server.bot_id}> old question", channel_id=always)
    for i in range(3):
        await server.adispatch_message(f"heard {i}", channel_id=listen)
    await server.adispatch_message("ignored", channel_id=off)
    side = await server.acreate_thread(listen, "side")  # active: listed in GUILD_CREATE
    off_side = await server.acreate_thread(off, "quiet")
    for text in ("thread one", "thread two"):
        server.add_history(text, side)
    server.add_history("not this one", off_side)
    options = {"backfill": 5, "channels": {listen: {"mode": "listen"}, off: {"mode": "off"}}}

    bot = await start(server, store, **options)
    await asyncio.wait_for(bot.running.bot.backfill.wait(), 30)
    assert bot.running.bot.backfill.stored == 5 + 3 + 2
    await bot.stop()
    agent = bot.runtime
    stored = await messages_in(store, agent, always)
    assert stored == sorted(["old 2", "old 3", "old 4", "old 5", "@Carrier old question"])
    assert await messages_in(store, agent, listen) == ["heard 0", "heard 1", "heard 2"]
    assert await messages_in(store, agent, off) == []
    assert await messages_in(store, agent, side) == ["thread one", "thread two"]
    assert await messages_in(store, agent, off_side) == [], "a thread takes its channel's mode"
    assert not server.sent_messages() and not bot.model.calls, "stored, never answered"
    count = await store.count(agent_id=agent.agent_id, kinds=[MemoryKind.MESSAGE])

    again = await start(server, store, **options)
    await asyncio.wait_for(again.running.bot.backfill.wait(), 30)
    catch_up = again.running.bot._catch_up_task
    assert catch_up is not None
    await asyncio.wait_for(catch_up, 15)
    await asyncio.sleep(0.3)
    assert again.running.bot.backfill.stored == 0
    await again.stop()
    assert await store.count(agent_id=agent.agent_id, kinds=[MemoryKind.MESSAGE]) == count
    assert not server.sent_messages(), "the second start answers nothing (not even catch-up)"
    assert again.running.bot.caught_up == 0


async def test_backfill_on_joining_a_guild(
    server: FakeDiscordServer, sqlite_store: MemoryStore
) -> None:
    new_guild, new_channel = "100000000000000077", "200000000000000077"
    bot = await start(server, sqlite_store, backfill=10)
    server.guilds[new_guild] = [new_channel]
    for i in range(3):
        server.add_history(f"before we came {i}", new_channel)
    joined = server._guild_payload(new_guild, [new_channel])
    del joined["unavailable"]  # a guild joined, not one coming back from an outage
    for session in server.live.values():  # the bot is added to the guild: GUILD_CREATE
        await server._send_dispatch(session, "GUILD_CREATE", joined)
    await wait_until(lambda: bot.running.bot.backfill.stored >= 3)
    await bot.stop()
    assert len(await messages_in(sqlite_store, bot.runtime, new_channel)) == 3
    assert not server.sent_messages()


# -- reactions ----------------------------------------------------------------------------------
async def test_reactions_on_a_reply_are_stored_as_feedback_and_removed(
    server: FakeDiscordServer, store: MemoryStore
) -> None:
    bot = await start(server, store)
    asked = await server.adispatch_message(f"<@{server.bot_id}> rate me", channel_id=CHANNELS[0])
    await wait_until(lambda: server.sent_after(asked["id"]))
    reply = server.sent_after(asked["id"])[0]
    await server.areact(reply.id, "\N{THUMBS UP SIGN}", user_id=ALICE)
    await server.areact(reply.id, "\N{THUMBS DOWN SIGN}", user_id=BOB, user_name="bob")
    await server.areact(reply.id, "\N{PARTY POPPER}", user_id=BOB)  # not feedback
    await server.areact(asked["id"], "\N{THUMBS UP SIGN}", user_id=BOB)  # not our message
    events = bot.running.bot.feedback_events
    await wait_until(lambda: len(events) >= 2)
    agent = bot.runtime
    rows = await list_feedback(store, agent_id=agent.agent_id)
    assert sorted((m.content["feedback"], m.content["person_key"]) for m in rows) == [
        ("negative", BOB),
        ("positive", ALICE),
    ]
    reply_ids = {m.content["reply_id"] for m in rows}
    assert len(reply_ids) == 1
    reply_memory = await store.get(uuid.UUID(reply_ids.pop()), with_vector=False)
    assert reply_memory is not None and reply_memory.text == reply.content, "linked to the reply"
    turn_id = uuid.UUID(rows[0].content["turn_id"])
    assert len(await list_feedback(store, turn_id=turn_id)) == 2  # what `carrier logs show` reads
    assert rows[0].room_id == reply_memory.room_id

    await server.areact(reply.id, "\N{THUMBS UP SIGN}", user_id=ALICE, remove=True)
    await wait_until(lambda: len(events) >= 3)
    assert events[-1] == (reply.id, "removed")
    rows = await list_feedback(store, agent_id=agent.agent_id)
    assert [(m.content["feedback"], m.content["person_key"]) for m in rows] == [("negative", BOB)]
    await bot.stop()


async def test_a_turns_reply_links_and_answered_mark_are_one_write(
    server: FakeDiscordServer, sqlite_store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk's feedback link and the answered mark go to the store in one
    transaction (cache_set_many), not a write each: a turn wrote four times before."""
    singles: list[str] = []
    batches: list[list[str]] = []
    set_many = sqlite_store.cache_set_many

    async def cache_set(key: str, value: object, ttl: float | None = None) -> None:
        singles.append(key)

    async def cache_set_many(entries: list[tuple[str, object, float | None]]) -> None:
        batches.append([key for key, _, _ in entries])
        await set_many(entries)

    monkeypatch.setattr(sqlite_store, "cache_set", cache_set)
    monkeypatch.setattr(sqlite_store, "cache_set_many", cache_set_many)
    long_reply = " ".join(f"word{i}" for i in range(500))  # > 2,000 characters: 2 chunks
    bot = await start(server, sqlite_store, lambda m: xml_reply(long_reply))
    asked = await server.adispatch_message(f"<@{server.bot_id}> talk", channel_id=CHANNELS[0])
    await wait_until(lambda: bool(batches))
    chunks = server.sent_after(asked["id"])
    assert len(chunks) == 2
    agent = bot.runtime.agent_id
    assert batches == [
        [
            f"discord:reply:{agent}:{chunks[0].id}",
            f"discord:reply:{agent}:{chunks[1].id}",
            f"discord:answered:{agent}:{asked['id']}",
        ]
    ]
    assert not singles
    await server.areact(chunks[1].id, "\N{THUMBS UP SIGN}", user_id=ALICE)
    await wait_until(lambda: len(bot.running.bot.feedback_events) >= 1)
    rows = await list_feedback(sqlite_store, agent_id=agent)
    assert [m.content["feedback"] for m in rows] == ["positive"], "the link works"
    await bot.stop()


async def test_ack_reaction_is_put_while_thinking_and_taken_off_after(
    server: FakeDiscordServer, sqlite_store: MemoryStore
) -> None:
    bot = await start(server, sqlite_store, ack_reaction="\N{EYES}", respond_only_to_mentions=True)
    asked = await server.adispatch_message(f"<@{server.bot_id}> think", channel_id=CHANNELS[0])
    await wait_until(lambda: len(server.bot_reactions(asked["id"])) >= 2)
    put, taken = server.bot_reactions(asked["id"])
    assert (put.op, put.emoji, taken.op, taken.emoji) == ("add", "\N{EYES}", "remove", "\N{EYES}")
    reply = server.sent_after(asked["id"])[0]
    assert put.at <= reply.at <= taken.at, "on while thinking, off after the reply"
    # Said right after a mention, in the same channel: stored after it (the ack is put
    # in the background, it does not hold the mention back), and not acknowledged.
    first = await server.adispatch_message(f"<@{server.bot_id}> one", channel_id=CHANNELS[1])
    chatter = await server.adispatch_message("just talk", channel_id=CHANNELS[1])
    await wait_until(lambda: server.sent_after(first["id"]))
    await asyncio.sleep(0.3)
    await bot.stop()
    assert not server.bot_reactions(chatter["id"]), "no ack for what is not said to the bot"
    room = await sqlite_store.find_room(bot.runtime.agent_id, "discord", CHANNELS[1])
    assert room is not None
    rows = await sqlite_store.list(room_id=room.id, oldest_first=True, limit=None)
    said = [m.text for m in rows if m.entity_id != bot.runtime.agent_id]
    assert said == ["@Carrier one", "just talk"]


# -- presence -----------------------------------------------------------------------------------
async def test_presence_shows_the_status_line(
    server: FakeDiscordServer, sqlite_store: MemoryStore
) -> None:
    bot = await start(server, sqlite_store, status="Answering questions about Carrier")
    assert server.custom_status() == "Answering questions about Carrier"
    await bot.stop()
