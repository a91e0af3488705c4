"""The bot's turn machinery in-process: real discord.py against the fake Discord on the
test's loop, with a stand-in runtime whose timing the test controls (the end-to-end tests
use the real runtime; these pin down concurrency, cancellation and shutdown precisely)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from carrier_cli.character import Character
from carrier_cli.clients.discord.bot import MESSAGE_CONTENT_HELP, CarrierDiscordBot
from carrier_cli.clients.discord.runner import run_discord_client
from carrier_cli.config import Settings
from carrier_cli.runtime.rooms import RoomGates, TurnHooks
from carrier_cli.runtime.types import IncomingMessage, TurnResult
from tests.support.fake_discord import FakeDiscordServer

GUILD = "100000000000000001"
CHANNELS = [str(200000000000000001 + i) for i in range(6)]

Behaviour = Callable[[IncomingMessage], Awaitable[str | None]]


@dataclass
class StandInRuntime:
    character: Character
    behaviour: Behaviour
    seen: list[IncomingMessage] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    cancelled: int = 0
    replayed_keys: set[str] = field(default_factory=set)

    gates: RoomGates = field(default_factory=RoomGates)

    async def handle_message(
        self, message: IncomingMessage, *, hooks: TurnHooks | None = None
    ) -> TurnResult:
        # The runtime's own per-room order (as AgentRuntime uses it): "storing" is noting
        # the message as seen; the reply is delivered while the room is still held.
        async def intake() -> None:
            self.seen.append(message)

        async with self.gates.turn((message.source, message.room_key), intake, hooks):
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                text = await self.behaviour(message)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.running -= 1
            result = TurnResult(
                decision="RESPOND",
                message_id=uuid.uuid4(),
                text=text,
                replayed=message.message_key in self.replayed_keys,
            )
            if hooks is not None:
                await hooks.finish(result)
            return result

    async def aclose(self) -> None:
        return None


def echo_after(seconds: float) -> Behaviour:
    async def behaviour(message: IncomingMessage) -> str:
        await asyncio.sleep(seconds)
        return f"re: {message.text}"

    return behaviour


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


def make_settings(server: FakeDiscordServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_api_token": server.token,
        "discord_api_base": server.base_url,  # without /api/v10: normalised
        "discord_gateway_url": server.gateway_url,
        "discord_typing_interval": 0.05,
        "discord_apology": "sorry!",
        "shutdown_grace": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Running:
    bot: CarrierDiscordBot
    stop: asyncio.Event
    task: asyncio.Task[None]


async def start_bot(
    server: FakeDiscordServer, runtime: StandInRuntime, settings: Settings
) -> Running:
    captured: list[CarrierDiscordBot] = []
    original_init = CarrierDiscordBot.__init__

    def spy(self: CarrierDiscordBot, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        captured.append(self)

    stop = asyncio.Event()
    CarrierDiscordBot.__init__ = spy  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(run_discord_client(runtime, settings, stop, on_status=None))
        for _ in range(200):
            if captured:
                break
            await asyncio.sleep(0.01)
    finally:
        CarrierDiscordBot.__init__ = original_init  # type: ignore[method-assign]
    bot = captured[0]
    await asyncio.wait_for(bot.ready_event.wait(), 10)
    return Running(bot, stop, task)


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_channels_run_concurrently_within_the_bound_and_in_order(
    server: FakeDiscordServer,
) -> None:
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0.05))
    running = await start_bot(
        server, runtime, make_settings(server, discord_max_concurrent_turns=3)
    )
    sent: dict[str, list[str]] = {}
    for i in range(4):
        for channel in CHANNELS:
            msg = await server.adispatch_message(f"<@{server.bot_id}> m{i}", channel_id=channel)
            sent.setdefault(channel, []).append(msg["id"])
    await wait_until(lambda: len(server.sent_messages()) >= 24)
    assert runtime.peak == 3, "turns overlap up to the bound and never beyond"
    for channel, ids in sent.items():
        answered = [m.reply_to for m in server.sent_messages(channel)]
        assert answered == ids, "replies in one channel keep the order of the messages"
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_failure_and_timeout_are_apologised_and_typing_stops(
    server: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def behaviour(message: IncomingMessage) -> str:
        if "boom" in message.text:
            raise RuntimeError("model exploded")
        if "slow" in message.text:
            await asyncio.sleep(30)
        return "fine"

    runtime = StandInRuntime(Character(name="Carrier"), behaviour)
    running = await start_bot(server, runtime, make_settings(server, discord_turn_timeout=0.3))
    caplog.set_level(logging.INFO, logger="carrier_cli")
    boom = await server.adispatch_message("boom", dm=True)
    slow = await server.adispatch_message("slow", dm=True, author_id="400000000000000002")
    await wait_until(lambda: len(server.sent_messages()) >= 2)
    replies = {m.reply_to: m for m in server.sent_messages()}
    assert replies[boom["id"]].content == "sorry!"
    assert replies[slow["id"]].content == "sorry!"
    assert runtime.cancelled == 1, "the timed-out turn was cancelled, not left running"
    count = len(server.typing)
    await asyncio.sleep(0.3)
    assert len(server.typing) == count, "no typing after the turns ended"
    assert "model exploded" in caplog.text and "exceeded" in caplog.text
    ok = await server.adispatch_message("still alive?", dm=True)
    await wait_until(lambda: any(m.reply_to == ok["id"] for m in server.sent_messages()))
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_shutdown_cancels_turns_past_the_grace_period(server: FakeDiscordServer) -> None:
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(30))
    running = await start_bot(server, runtime, make_settings(server, shutdown_grace=0.3))
    await server.adispatch_message("long one", dm=True)
    await wait_until(lambda: runtime.running == 1)
    started = time.monotonic()
    running.stop.set()
    await asyncio.wait_for(running.task, 10)
    assert time.monotonic() - started < 2.0
    assert runtime.cancelled == 1
    assert running.bot.is_closed()
    assert not server.sent_messages(), "a cancelled turn sends nothing"
    count = len(server.typing)
    await asyncio.sleep(0.2)
    assert len(server.typing) == count


async def test_replayed_turn_is_not_answered_again(server: FakeDiscordServer) -> None:
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    first = await server.adispatch_message("once", dm=True)
    await wait_until(lambda: server.sent_messages())
    runtime.replayed_keys.add(first["id"])
    # The same event again, as after a resume that replays it.
    await server._dispatch("MESSAGE_CREATE", first)
    await wait_until(lambda: len(runtime.seen) == 2)
    await asyncio.sleep(0.1)
    assert len(server.sent_messages()) == 1
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_each_own_message_is_remembered_once(server: FakeDiscordServer) -> None:
    """A reply's id is seen when sent and again when the gateway echoes it; the bot's
    history of its own messages (reply detection) keeps it once, so its 2,000 entries
    cover 2,000 replies (they covered 1,000)."""
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    for n in range(3):
        await server.adispatch_message(f"hello {n}", dm=True)
    await wait_until(lambda: len(server.sent_messages()) == 3)
    sent = {m.id for m in server.sent_messages()}
    await asyncio.sleep(0.2)  # the echoes come back over the gateway
    own = running.bot._own_ids
    assert all(message_id in own for message_id in sent)
    assert len(own) == 3
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_attachments_and_names_reach_the_runtime(server: FakeDiscordServer) -> None:
    import io

    from PIL import Image

    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    picture = io.BytesIO()
    Image.new("RGB", (10, 10), "blue").save(picture, "PNG")
    attachment = server.add_attachment("cat.png", picture.getvalue(), "image/png")
    await server.adispatch_message(
        f"<@{server.bot_id}> look at this",
        channel_id=CHANNELS[0],
        author_name="bob",
        attachments=[attachment],
    )
    await wait_until(lambda: runtime.seen)
    incoming = runtime.seen[0]
    (read,) = incoming.attachments  # read from the CDN (tests/clients/discord/test_media.py)
    assert read["url"] == attachment["url"] and read["filename"] == "cat.png"
    assert (read["kind"], read["width"], read["height"]) == ("image", 10, 10)
    assert read["data"] == picture.getvalue() and read["mime"] == "image/png"
    assert incoming.text == "@Carrier look at this"
    assert incoming.sender_name == "Bob" and incoming.room_key == CHANNELS[0]
    assert incoming.mentions_agent and not incoming.is_direct
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_missing_message_content_intent_is_explained(
    server: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="carrier_cli")
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    assert MESSAGE_CONTENT_HELP not in caplog.text  # the application has the intent flag
    # ... but Discord still strips the text: what a guild message looks like without it.
    await server.adispatch_message("", channel_id=CHANNELS[1])
    await server.adispatch_message("", channel_id=CHANNELS[1])
    await wait_until(lambda: MESSAGE_CONTENT_HELP in caplog.text)
    assert caplog.text.count("Privileged Gateway Intents") == 1, "said once, not per message"
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_system_messages_are_not_conversation(
    server: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="carrier_cli")
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    await server.adispatch_message("", channel_id=CHANNELS[2], message_type=7)  # a join
    marker = await server.adispatch_message("after the join", channel_id=CHANNELS[2])
    await wait_until(lambda: runtime.seen)
    assert [m.message_key for m in runtime.seen] == [marker["id"]]
    assert MESSAGE_CONTENT_HELP not in caplog.text
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_created_then_500_leaves_exactly_one_reply(server: FakeDiscordServer) -> None:
    """Discord creates the message and answers 500; discord.py retries the POST. The reply's
    nonce (enforce_nonce) makes the retry return the first message: one reply, not two."""
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0))
    running = await start_bot(server, runtime, make_settings(server))
    server.fail_after_create_next(1)
    message = await server.adispatch_message(
        f"<@{server.bot_id}> flaky server", channel_id=CHANNELS[3]
    )
    await wait_until(lambda: server.server_errors and server.nonce_hits, timeout=15)
    await asyncio.sleep(0.2)
    sent = server.sent_messages(CHANNELS[3])
    assert [m.reply_to for m in sent] == [message["id"]], "the retry did not post a copy"
    assert sent[0].nonce == f"{message['id']}-r0"
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_reply_replayed_by_a_restarted_bot_is_not_posted_twice(
    server: FakeDiscordServer,
) -> None:
    """The nonce is derived from the inbound message id and the chunk index, so a second bot
    process answering the same message again (a turn replayed after a restart) gets the
    message Discord already has instead of posting a second copy, chunk by chunk."""
    long_text = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(5))  # 3+ chunks

    async def behaviour(message: IncomingMessage) -> str:
        return long_text

    message: dict[str, Any] = {}
    for _ in range(2):
        runtime = StandInRuntime(Character(name="Carrier"), behaviour)
        running = await start_bot(server, runtime, make_settings(server))
        if not message:
            message = await server.adispatch_message(
                f"<@{server.bot_id}> long one", channel_id=CHANNELS[4]
            )
        else:
            await server._dispatch("MESSAGE_CREATE", message)  # the same message, again
        await wait_until(lambda r=runtime: r.seen)  # type: ignore[misc]
        await wait_until(lambda b=running.bot: not b._in_flight)  # type: ignore[misc]
        running.stop.set()
        await asyncio.wait_for(running.task, 10)
    sent = server.sent_messages(CHANNELS[4])
    assert len(sent) >= 3
    assert [m.nonce for m in sent] == [f"{message['id']}-r{i}" for i in range(len(sent))]
    assert server.nonce_hits == len(sent), "every chunk of the second answer was deduplicated"


async def test_the_runtime_warms_up_while_the_bot_connects_and_ready_waits_for_it(
    server: FakeDiscordServer,
) -> None:
    """The first messages must not wait for the embedding model's load (0.95-1.4 s in the
    burst): it starts with the login, and 'connected' is said once it has finished."""
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0.0))
    events: list[str] = []
    release = asyncio.Event()

    async def warm() -> None:
        events.append("warming")
        await release.wait()
        events.append("warm")

    runtime.warm = warm  # type: ignore[attr-defined]
    stop = asyncio.Event()
    statuses: list[str] = []
    task = asyncio.create_task(
        run_discord_client(runtime, make_settings(server), stop, on_status=statuses.append)
    )
    await wait_until(lambda: server.identifies >= 1)
    assert events == ["warming"], "warming while logging in and connecting"
    await asyncio.sleep(0.2)
    assert not statuses, "not said to be connected before it is ready"
    release.set()
    await wait_until(lambda: statuses)
    assert events == ["warming", "warm"] and "connected as" in statuses[0]
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_failed_warm_up_is_logged_and_the_bot_still_runs(
    server: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = StandInRuntime(Character(name="Carrier"), echo_after(0.0))

    async def warm() -> None:
        raise RuntimeError("no model here")

    runtime.warm = warm  # type: ignore[attr-defined]
    running = await start_bot(server, runtime, make_settings(server))
    assert "no model here" in caplog.text
    await server.adispatch_message(f"<@{server.bot_id}> hi", channel_id=CHANNELS[0])
    await wait_until(lambda: server.sent_messages())
    running.stop.set()
    await asyncio.wait_for(running.task, 10)
