"""`carrier run --client discord` end to end: the real CLI process, real discord.py, the fake
Discord server and the fake model server. One bot process serves the module (starting one
costs seconds); every test talks in its own channel so their memories do not mix."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.discord.harness import CarrierProcess, start_carrier, write_character, xml_reply
from tests.clients.discord.replies import long_reply
from tests.clients.discord.test_split import check_invariants, fence_lines
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess, Reply

pytestmark = [pytest.mark.slow, pytest.mark.service]

GUILD = "100000000000000001"
CHANNELS = [str(200000000000000001 + i) for i in range(13)]
APOLOGY = "Sorry, that went wrong (test apology)."


discord = fake_discord_fixture({GUILD: CHANNELS})


@pytest.fixture(scope="module")
def bot(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CarrierProcess]:
    root = tmp_path_factory.mktemp("discord-bot")
    character = write_character(root / "carrier.yaml", respond_only_to_mentions=True)
    env = {
        "CARRIER_DISCORD_TYPING_INTERVAL": "0.2",
        # Every turn of this shared bot must finish within it, on a loaded CI machine too
        # (3 s was not always enough there); only the timeout test goes past it.
        "CARRIER_DISCORD_TURN_TIMEOUT": "8",
        "CARRIER_DISCORD_APOLOGY": APOLOGY,
        "CARRIER_SHUTDOWN_GRACE": "5",
    }
    process = start_carrier(discord, model.url, root / "home", [character], env=env)
    try:
        process.wait_status()
        yield process
    finally:
        process.terminate()


def test_status_line_names_bot_guilds_and_character(bot: CarrierProcess) -> None:
    status = next(line for line in bot.stdout_lines if "connected as" in line)
    assert "Carrier (@carrier" in status
    assert "1 guild (Guild 0001)" in status
    assert "as character Carrier" in status


def test_dm_is_answered_once_and_own_messages_are_ignored(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    message = discord.dispatch_message("hello from a DM", dm=True, author_id="400000000000000101")
    reply = discord.wait_reply(message)
    assert reply.content == "Echo: hello from a DM"
    time.sleep(0.5)  # the fake echoes the bot's reply back over the gateway: no answer to it
    assert len(discord.sent_messages(reply.channel_id)) == 1
    lines = discord.wait_for(lambda: bot.log_lines("'hello from a DM'"), what="the turn log line")
    assert "replied in 1 message" in lines[0] and "INFO" in lines[0]


def test_guild_mention_is_answered_in_both_mention_forms(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    channel = CHANNELS[1]
    first = discord.dispatch_message(f"<@{discord.bot_id}> ping one", channel_id=channel)
    assert discord.wait_reply(first).reply_to == first["id"]
    legacy = discord.dispatch_message(f"<@!{discord.bot_id}> ping two", channel_id=channel)
    assert discord.wait_reply(legacy).channel_id == channel


def test_reply_to_the_bot_counts_as_addressed(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    channel = CHANNELS[2]
    first = discord.dispatch_message(f"<@{discord.bot_id}> start", channel_id=channel)
    answer = discord.wait_reply(first)
    follow_up = discord.dispatch_message("and then?", channel_id=channel, reply_to=answer.id)
    discord.wait_reply(follow_up)


def test_non_mention_is_stored_not_answered_when_respond_only_to_mentions(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    """respond_only_to_mentions is the `mentions` channel mode: the chatter is not
    answered (and costs no model call) but is stored, so the next answer knows it."""
    channel = CHANNELS[3]
    calls = len(model.requests("/v1/chat/completions"))
    ignored = discord.dispatch_message("just chatting among ourselves", channel_id=channel)
    discord.wait_for(
        lambda: "just chatting among ourselves" in {m.get("text") for m in bot.message_memories()},
        what="the chatter stored",
    )
    assert len(model.requests("/v1/chat/completions")) == calls, "no should-respond call"
    addressed = discord.dispatch_message(f"<@{discord.bot_id}> now you", channel_id=channel)
    discord.wait_reply(addressed)
    assert not [m for m in discord.sent_messages(channel) if m.reply_to == ignored["id"]]
    prompt = model.requests("/v1/chat/completions")[-1].prompt_text
    assert "just chatting among ourselves" in prompt, "in the conversation the model reads"


def test_long_reply_is_split_into_valid_messages(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    channel = CHANNELS[4]
    text = long_reply()
    assert "```python" in text  # real fences in the model output, kept by the parser
    model.push(Reply(text=xml_reply(text)))
    message = discord.dispatch_message(f"<@{discord.bot_id}> explain ranking", channel_id=channel)
    discord.wait_reply(message)
    # The turn's log line comes after its last chunk was sent (a fixed pause after the
    # first chunk was not always long enough for the others on a loaded machine).
    lines = discord.wait_for(lambda: bot.log_lines("explain ranking"), what="turn log line")
    chunks = discord.sent_after(message["id"])
    assert len(chunks) >= 3
    assert chunks[0].reply_to == message["id"]
    assert all(c.reply_to is None for c in chunks[1:])
    contents = [c.content for c in chunks]
    check_invariants(text, contents)  # <= 2000 each, nothing lost, fences balanced
    assert any(fence_lines(c)[:1] == ["```python"] for c in contents[1:]), "fence reopened"
    assert all(len(fence_lines(c)) % 2 == 0 for c in contents)
    assert f"replied in {len(chunks)} messages" in lines[0]
    stored = [m for m in bot.message_memories() if "Closing thought 2.7" in m.get("text", "")]
    assert len(stored) == 1, "the reply is one memory however many messages it took"
    assert stored[0]["text"] == text


def test_redelivered_event_is_neither_answered_nor_stored_twice(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    channel = CHANNELS[11]
    message = discord.dispatch_message(f"<@{discord.bot_id}> only once please", channel_id=channel)
    discord.wait_reply(message)
    discord.redeliver(message)
    discord.wait_for(lambda: bot.log_lines("already handled"), what="the replay log line")
    assert len([m for m in discord.sent_messages(channel) if m.reply_to == message["id"]]) == 1
    stored = [m for m in bot.message_memories() if "only once please" in m.get("text", "")]
    # the message once, and the bot's echo of it once
    assert sorted(m["name"] for m in stored) == ["Alice", "Carrier"]


def test_attachments_are_recorded_in_the_memory(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    attachment = {
        "id": "700000000000000009",
        "filename": "diagram.png",
        "size": 2048,
        "url": "https://cdn.discordapp.com/attachments/9/9/diagram.png",
        "proxy_url": "https://media.discordapp.net/attachments/9/9/diagram.png",
        "content_type": "image/png",
        "width": 64,
        "height": 64,
    }
    message = discord.dispatch_message(
        f"<@{discord.bot_id}> see attached",
        dm=True,
        author_id="400000000000000077",
        attachments=[attachment],
    )
    discord.wait_reply(message)
    memories = bot.message_memories()
    stored = [m for m in memories if "see attached" in m.get("text", "") and m["name"] == "Alice"]
    assert len(stored) == 1
    recorded = stored[0]["attachments"][0]
    assert recorded["url"] == attachment["url"]
    assert recorded["filename"] == "diagram.png" and recorded["content_type"] == "image/png"


def test_typing_runs_during_generation_and_stops(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    channel = CHANNELS[5]
    model.push(Reply(text=xml_reply("Thought about it."), delay=1.2))
    message = discord.dispatch_message(f"<@{discord.bot_id}> think slowly", channel_id=channel)
    reply = discord.wait_reply(message)
    time.sleep(0.8)  # four typing intervals: a leaked typing loop would show up
    typing = [at for ch, at in discord.typing if ch == channel]
    assert len(typing) >= 3, "typing is repeated while the model works"
    assert max(typing) < reply.at, "no typing request after the reply was sent"


def test_rate_limited_send_is_retried(bot: CarrierProcess, discord: FakeDiscordServer) -> None:
    channel = CHANNELS[6]
    discord.rate_limit_next(1, retry_after=0.4)
    message = discord.dispatch_message(f"<@{discord.bot_id}> rate me", channel_id=channel)
    reply = discord.wait_reply(message)
    limited = [at for ch, at in discord.rate_limited if ch == channel]
    assert len(limited) == 1
    assert reply.at - limited[0] >= 0.35, "discord.py waited retry_after before retrying"


def test_gateway_close_4000_resumes_without_losing_a_message(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    channel = CHANNELS[7]
    identifies, resumes = discord.identifies, discord.resumes
    discord.close_gateway(4000)
    during = discord.dispatch_message(
        f"<@{discord.bot_id}> sent during the outage", channel_id=channel
    )
    discord.wait_reply(during, timeout=20)
    assert discord.resumes == resumes + 1
    assert discord.identifies == identifies, "resumed, not re-identified"
    after = discord.dispatch_message(f"<@{discord.bot_id}> after the outage", channel_id=channel)
    discord.wait_reply(after)
    assert len([m for m in discord.sent_messages(channel) if m.reply_to == during["id"]]) == 1


def test_model_error_is_answered_with_apology_and_bot_survives(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    channel = CHANNELS[8]
    model.push(Reply(status=500, error_message="upstream exploded"))
    failing = discord.dispatch_message(f"<@{discord.bot_id}> break please", channel_id=channel)
    assert discord.wait_reply(failing).content == APOLOGY
    assert bot.log_lines("failed")
    working = discord.dispatch_message(f"<@{discord.bot_id}> still there?", channel_id=channel)
    assert discord.wait_reply(working).content == "Echo: @Carrier still there?"
    assert bot.process.poll() is None


def test_turn_over_the_timeout_is_cancelled_with_apology(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    channel = CHANNELS[9]
    model.push(Reply(text=xml_reply("too late"), delay=9.5))  # turn timeout is 8 s
    slow = discord.dispatch_message(f"<@{discord.bot_id}> take your time", channel_id=channel)
    reply = discord.wait_reply(slow, timeout=30)
    assert reply.content == APOLOGY
    assert discord.wait_for(lambda: bot.log_lines("exceeded 8s"), what="timeout log")
    time.sleep(2.0)  # past the model's late answer: the cancelled turn must not post it
    assert all(m.content != "too late" for m in discord.sent_messages(channel))
    typing = [at for ch, at in discord.typing if ch == channel]
    assert max(typing) < reply.at


def test_turns_in_one_channel_stay_in_order(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    channel = CHANNELS[10]
    model.push(Reply(text=xml_reply("first answer"), delay=0.6))
    first = discord.dispatch_message(f"<@{discord.bot_id}> one", channel_id=channel)
    second = discord.dispatch_message(f"<@{discord.bot_id}> two", channel_id=channel)
    reply_two = discord.wait_reply(second)
    reply_one = discord.wait_reply(first)
    assert reply_one.content == "first answer"
    assert reply_one.at < reply_two.at


def _secret_free(text: str, secret: str) -> bool:
    return secret not in text and not re.search(re.escape(secret[:12]) + r"\w{6,}", text)


def test_invalid_token_is_a_clear_error_exit_1(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    bad = "definitely-not-the-token-abcdef123456"
    process = start_carrier(
        discord, model.url, tmp_path / "home", [write_character(tmp_path / "c.yaml")], token=bad
    )
    assert process.wait_exit(60) == 1
    assert "rejected the token" in process.stderr
    assert "carrier keys set discord" in process.stderr
    assert "Traceback" not in process.stderr
    assert _secret_free(process.stderr, bad)


def test_refused_privileged_intents_is_a_clear_error(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    refusing = FakeDiscordServer()
    refusing.refuse_intents = True
    refusing.start_in_thread()
    try:
        process = start_carrier(
            refusing, model.url, tmp_path / "home", [write_character(tmp_path / "c.yaml")]
        )
        assert process.wait_exit(60) == 1
    finally:
        refusing.stop_thread()
    assert "4014" in process.stderr
    assert "MESSAGE CONTENT INTENT" in process.stderr
    assert "Traceback" not in process.stderr


def test_sigterm_finishes_in_flight_turn_and_exits_0(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    # Also: an application without the Message Content intent gets told how to enable it.
    server = FakeDiscordServer(app_flags=0)
    server.start_in_thread()
    try:
        process = start_carrier(
            server,
            model.url,
            tmp_path / "home",
            [write_character(tmp_path / "c.yaml")],
            env={"CARRIER_SHUTDOWN_GRACE": "4"},
        )
        process.wait_status()
        model.push(Reply(text=xml_reply("finished before exit"), delay=1.5))
        message = server.dispatch_message("a slow question", dm=True)
        server.wait_for(lambda: server.typing, what="the turn to start")
        started = time.monotonic()
        code = process.terminate(timeout=20)
        elapsed = time.monotonic() - started
        assert code == 0, process.stderr
        # Within the grace period: a turn still running after it is cancelled, so the reply
        # below would be missing. The bound only catches a shutdown that hangs after the
        # drain; 4 + 3 s failed at 8.0 s with four test workers on two loaded cores.
        assert elapsed < 4 + 10, f"stopped after the drain (took {elapsed:.1f}s)"
        replies = [m for m in server.sent_messages() if m.reply_to == message["id"]]
        assert [m.content for m in replies] == ["finished before exit"], process.stderr
        assert not server.connected, "the gateway connection was closed"
        assert "Message Content intent is not enabled" in process.stderr
        assert "Privileged Gateway Intents" in process.stderr
    finally:
        server.stop_thread()


def test_two_characters_with_their_own_bots_in_one_process(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    server = FakeDiscordServer(guilds={GUILD: CHANNELS[:2]})
    captain_token = "captain-bot-token-abcdef0123"
    captain_id = server.add_bot(captain_token, "Captain")
    server.start_in_thread()
    home = tmp_path / "home"
    stored = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "keys", "set", "discord:captain"],
        input=captain_token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CARRIER_HOME": str(home), "CARRIER_KEYRING": "file"},
    )
    assert stored.returncode == 0, stored.stderr
    carrier = write_character(tmp_path / "carrier.yaml", respond_only_to_mentions=True)
    captain = write_character(
        tmp_path / "captain.yaml",
        name="Captain",
        respond_only_to_mentions=True,
        token_key="discord:captain",
    )
    try:
        process = start_carrier(server, model.url, home, [carrier, captain])
        try:
            server.wait_for(
                lambda: (
                    len([x for x in process.stdout_lines if "connected" in x]) == 2
                    or process.process.poll() is not None
                ),
                timeout=60,
                what="two status lines",
            )
        finally:
            print(process.stderr)
        assert process.process.poll() is None, process.stderr
        assert any("as character Captain" in line for line in process.stdout_lines)
        to_captain = server.dispatch_message(f"<@{captain_id}> ahoy", channel_id=CHANNELS[0])
        to_carrier = server.dispatch_message(f"<@{server.bot_id}> hello", channel_id=CHANNELS[1])
        assert server.wait_reply(to_captain).author_id == captain_id
        assert server.wait_reply(to_carrier).author_id == server.bot_id
        time.sleep(0.5)
        answers = [m for m in server.sent_messages() if m.reply_to == to_captain["id"]]
        assert len(answers) == 1, "only the mentioned character answers"
        assert process.terminate() == 0
    finally:
        server.stop_thread()
    assert captain_token not in process.stderr
