"""Catch-up after a crash: the real `carrier run --client discord` process, killed with
SIGKILL while a turn waits on a slow model, answers the stored message when it starts again,
exactly once, and not again on the restart after that (answered marks in the memory
database, plus reply nonces that make Discord return a chunk it already has)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.clients.discord.harness import CarrierProcess, start_carrier, write_character, xml_reply
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess, Reply, model_server_fixture

pytestmark = [pytest.mark.slow, pytest.mark.service]

GUILD = "100000000000000001"
CHANNELS = [str(200000000000000001 + i) for i in range(2)]


model = model_server_fixture("function")


discord = fake_discord_fixture({GUILD: CHANNELS}, scope="function")


def replies_to(discord: FakeDiscordServer, message: dict[str, object]) -> list[str]:
    return [m.content for m in discord.sent_messages() if m.reply_to == message["id"]]


def wait_turns_at_the_model(
    discord: FakeDiscordServer, model: ModelServerProcess, turns: int
) -> None:
    """Until `turns` turns have asked the model. A turn asks only once its message is
    stored, so waiting for the first one before sending the second orders them as "older"
    and "newer" by storage (what catch-up goes by), not by a sleep that a busy machine can
    outlast (the bot reads an attachment before it stores the message)."""
    discord.wait_for(
        lambda: len(model.requests("/v1/chat/completions")) >= turns,
        what=f"{turns} turn(s) at the model",
    )


def test_killed_mid_turn_is_caught_up_once_oldest_first(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    character = write_character(tmp_path / "carrier.yaml", respond_only_to_mentions=True)
    home = tmp_path / "home"

    def start(**env: str) -> CarrierProcess:
        process = start_carrier(discord, model.url, home, [character], env=env)
        process.wait_status()
        return process

    first = start()
    model.push(
        Reply(text=xml_reply("never sent one"), delay=60),
        Reply(text=xml_reply("never sent two"), delay=60),
    )
    older = discord.dispatch_message(f"<@{discord.bot_id}> first question", channel_id=CHANNELS[0])
    wait_turns_at_the_model(discord, model, 1)
    newer = discord.dispatch_message(f"<@{discord.bot_id}> second question", channel_id=CHANNELS[1])
    wait_turns_at_the_model(discord, model, 2)
    texts = {m.get("text") for m in first.message_memories()}
    assert {"@Carrier first question", "@Carrier second question"} <= texts
    first.process.kill()  # SIGKILL: no drain, no goodbye
    first.wait_exit(10)
    assert not discord.sent_messages()

    # catch-up off: the stored messages stay unanswered.
    off = start(CARRIER_DISCORD_CATCH_UP_MINUTES="0")
    time.sleep(1.0)
    assert off.terminate() == 0
    assert not discord.sent_messages(), off.stderr
    assert not off.log_lines("caught up")

    model.push(Reply(text=xml_reply("answer one")), Reply(text=xml_reply("answer two")))
    # One model call at a time: the catch-up turns run in the order they were queued.
    second = start(CARRIER_DISCORD_MAX_CONCURRENT_TURNS="1")
    discord.wait_for(lambda: second.log_lines("caught up 2 unanswered messages"), what="catch-up")
    assert replies_to(discord, older) == ["answer one"], second.stderr
    assert replies_to(discord, newer) == ["answer two"], second.stderr
    assert [m.reply_to for m in discord.sent_messages()] == [older["id"], newer["id"]]
    assert second.terminate() == 0

    third = start()
    discord.wait_for(lambda: third.log_lines("caught up 0 unanswered messages"), what="catch-up")
    time.sleep(0.5)
    assert third.terminate() == 0
    assert len(discord.sent_messages()) == 2, "a second restart answers nothing again"
    assert "Traceback" not in second.stderr + third.stderr


def test_catch_up_is_oldest_first_when_the_older_message_is_slower_to_read(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    """The older message carries a file that the CDN is slow to serve at catch-up: reading it
    must not let the newer message take the one model slot first."""
    character = write_character(tmp_path / "carrier.yaml", respond_only_to_mentions=True)
    home = tmp_path / "home"
    first = start_carrier(discord, model.url, home, [character])
    first.wait_status()
    model.push(
        Reply(text=xml_reply("never sent one"), delay=60),
        Reply(text=xml_reply("never sent two"), delay=60),
    )
    notes = discord.add_attachment(
        "notes.txt", b"Launch at dawn.", "text/plain", channel_id=CHANNELS[0]
    )
    older = discord.dispatch_message(
        f"<@{discord.bot_id}> first question", channel_id=CHANNELS[0], attachments=[notes]
    )
    wait_turns_at_the_model(discord, model, 1)
    newer = discord.dispatch_message(f"<@{discord.bot_id}> second question", channel_id=CHANNELS[1])
    wait_turns_at_the_model(discord, model, 2)
    first.process.kill()
    first.wait_exit(10)

    discord.cdn_delay = 1.5  # the older turn reads its file for 1.5 s; the newer has none
    model.push(Reply(text=xml_reply("answer one")), Reply(text=xml_reply("answer two")))
    second = start_carrier(
        discord, model.url, home, [character], env={"CARRIER_DISCORD_MAX_CONCURRENT_TURNS": "1"}
    )
    second.wait_status()
    discord.wait_for(lambda: second.log_lines("caught up 2 unanswered messages"), what="catch-up")
    assert replies_to(discord, older) == ["answer one"], second.stderr
    assert replies_to(discord, newer) == ["answer two"], second.stderr
    assert second.terminate() == 0


def test_turn_cut_off_by_the_grace_period_is_caught_up(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    character = write_character(tmp_path / "carrier.yaml")
    home = tmp_path / "home"
    env = {"CARRIER_SHUTDOWN_GRACE": "0.5"}
    first = start_carrier(discord, model.url, home, [character], env=env)
    first.wait_status()
    model.push(Reply(text=xml_reply("too slow"), delay=60))
    message = discord.dispatch_message("a DM that outlives the grace period", dm=True)
    wait_turns_at_the_model(discord, model, 1)
    assert first.terminate() == 0
    assert first.log_lines("cancelled (shutdown)"), first.stderr
    assert not discord.sent_messages()

    model.push(Reply(text=xml_reply("better late")))
    second = start_carrier(discord, model.url, home, [character], env=env)
    second.wait_status()
    discord.wait_for(lambda: second.log_lines("caught up 1 unanswered message"), what="catch-up")
    assert second.terminate() == 0
    assert replies_to(discord, message) == ["better late"], second.stderr


@pytest.mark.parametrize("discord_created_it", [True, False], ids=["created", "lost"])
def test_killed_while_posting_the_reply_posts_it_once(
    discord: FakeDiscordServer,
    model: ModelServerProcess,
    tmp_path: Path,
    discord_created_it: bool,
) -> None:
    """The reply is stored and its POST is on its way when the bot is killed, so no turn end
    was recorded. Either Discord created the message but the answer never arrived
    ("created": catch-up finds our reply in the channel and leaves it), or the POST died
    before Discord read it ("lost": the stored reply is posted at the next start). In both
    cases one message in the channel, and the model is not asked again."""
    character = write_character(tmp_path / "carrier.yaml")
    home = tmp_path / "home"
    first = start_carrier(discord, model.url, home, [character])
    first.wait_status()
    model.push(Reply(text=xml_reply("posted exactly once")))
    if discord_created_it:
        discord.delay_after_create = 30.0  # the message exists; the answer is late
    else:
        discord.rest_delay = 2.0  # the POST waits before Discord reads it
    message = discord.dispatch_message("answer me while Discord is slow", dm=True)
    if discord_created_it:
        discord.wait_for(lambda: replies_to(discord, message), what="the reply to be created")
    else:
        discord.wait_for(
            lambda: any(
                method == "POST" and path.endswith("/messages")
                for method, path, _ in discord.requests
            ),
            what="the reply's POST",
        )
    first.process.kill()
    first.wait_exit(10)
    discord.delay_after_create = 0.0
    time.sleep(discord.rest_delay + 0.5)  # the lost POST fails on its dead connection
    discord.rest_delay = 0.0
    assert len(discord.sent_messages()) == (1 if discord_created_it else 0)

    second = start_carrier(discord, model.url, home, [character])
    second.wait_status()
    expected = "caught up 0 unanswered messages" if discord_created_it else "caught up 1 "
    discord.wait_for(lambda: second.log_lines(expected), what="catch-up")
    assert second.terminate() == 0
    assert replies_to(discord, message) == ["posted exactly once"], second.stderr
    assert bool(second.log_lines("stored reply sent")) is not discord_created_it, second.stderr
    assert len(model.requests("/v1/chat/completions")) == 1, "the model was not asked again"


def test_killed_after_the_first_chunk_of_a_long_reply_posts_the_rest_once(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    """A reply of three chunks; the bot is killed once Discord created the first. Before,
    catch-up saw our reply to the message in the channel, counted it answered and the
    other two chunks were never posted. Now the stored reply is compared with what the
    channel holds, and the catch-up posts the two missing chunks, once, without asking
    the model again; a further restart posts nothing."""
    from carrier_cli.clients.discord.split import split_message

    character = write_character(tmp_path / "carrier.yaml")
    home = tmp_path / "home"
    long_reply = "\n\n".join(f"Paragraph {n}: " + "tide " * 300 for n in range(3))
    chunks = split_message(long_reply)
    assert len(chunks) == 3
    first = start_carrier(discord, model.url, home, [character])
    first.wait_status()
    model.push(Reply(text=xml_reply(long_reply)))
    discord.delay_after_create = 30.0  # the first chunk exists; its answer is late
    message = discord.dispatch_message("tell me everything", dm=True)
    discord.wait_for(lambda: discord.sent_messages(), what="the first chunk to be created")
    first.process.kill()
    first.wait_exit(10)
    discord.delay_after_create = 0.0
    assert [m.content for m in discord.sent_messages()] == chunks[:1]

    second = start_carrier(discord, model.url, home, [character])
    second.wait_status()
    discord.wait_for(lambda: second.log_lines("caught up 1 "), what="catch-up")
    discord.wait_for(lambda: len(discord.sent_messages()) >= 3, what="the other chunks")
    assert second.terminate() == 0
    assert [m.content for m in discord.sent_messages()] == chunks, second.stderr
    assert replies_to(discord, message) == chunks[:1]  # only the first chunk is a reply
    assert len(model.requests("/v1/chat/completions")) == 1, "the model was not asked again"

    third = start_carrier(discord, model.url, home, [character])
    third.wait_status()
    discord.wait_for(lambda: third.log_lines("caught up 0 unanswered messages"), what="catch-up")
    assert third.terminate() == 0
    assert len(discord.sent_messages()) == 3
