"""Should-respond: the rules decide without a model call where they can; else the small model."""

from __future__ import annotations

from typing import Any

import pytest

from carrier_cli.clients.discord.addressing import InboundMessage, decide, to_incoming
from carrier_cli.clients.terminal.session import ChatSession
from carrier_cli.runtime.should_respond import name_pattern, rule_decision
from carrier_cli.runtime.types import Addressing, IncomingMessage
from tests.runtime.conftest import dm, group, reply_xml

BOT_ID = "111"


def from_discord(
    text: str, character: Any, key: str | None = None, *, bot: bool = False
) -> IncomingMessage:
    """A guild message as the Discord client hands it to the runtime: its rules
    (`clients.discord`) and addressing turned into the neutral verdict on the message."""
    inbound = InboundMessage(
        message_id=key or "900",
        channel_id="room-1",
        author_id="u1",
        author_name="Bob",
        author_username="bob",
        content=text,
        clean_content=text,
        guild_id="700",
        author_is_bot=bot,
    )
    names = [character.name, character.username]
    verdict = decide(inbound, bot_id=BOT_ID, options=character.clients.discord, names=names)
    return to_incoming(inbound, verdict)


def _decider(answer: str):
    def script(messages):
        if "RESPOND, IGNORE or STOP" in messages[-1].content:
            return answer
        return reply_xml("Here I am.")

    return script


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hey Eliza, you around?", True),
        ("ELIZA!", True),
        ("ping @eliza_bot", True),
        ("eliza_bot what do you think", True),
        ("Elizabeth is here", False),
        ("mentioning elizabot", False),
        ("nothing to see", False),
    ],
)
def test_name_match_is_a_whole_word(character, text, expected):
    assert bool(name_pattern(character).search(text)) is expected


def test_rules(character):
    names = name_pattern(character)
    assert rule_decision(dm("hi"), names) == "DIRECT"
    # the terminal is always 1:1: its client says so on every message
    terminal = ChatSession(runtime=None, room_key="room-1", user="bob").message("hi")
    assert rule_decision(terminal, names) == "DIRECT"
    assert rule_decision(group("hi", mentions_agent=True), names) == "MENTIONED"
    assert rule_decision(group("hi eliza"), names) == "MENTIONED"
    assert rule_decision(from_discord("hi eliza", character, bot=True), names) == "IGNORE"
    assert rule_decision(group("hi all"), names) is None
    # a bot on another source is not filtered by the Discord rule
    assert rule_decision(group("hi", source="api", sender_is_bot=True), names) is None
    lenient = character.model_copy(deep=True)
    lenient.clients.discord.ignore_bots = False
    assert rule_decision(from_discord("hi eliza", lenient, bot=True), names) == "MENTIONED"
    strict = character.model_copy(deep=True)
    strict.clients.discord.respond_only_to_mentions = True
    assert rule_decision(from_discord("hi all", strict), names) == "IGNORE"


def test_the_clients_verdict_wins_over_the_runtimes_own_reading(character):
    names = name_pattern(character)
    for how in (Addressing.MENTION, Addressing.REPLY, Addressing.NAME):
        assert rule_decision(group("hi all", addressed=how), names) == "MENTIONED"
    assert rule_decision(group("hi", addressed=Addressing.DIRECT), names) == "DIRECT"
    # the client looked and found no address: no second name match in the runtime
    assert rule_decision(group("hi eliza", addressed=Addressing.NONE), names) is None
    only = group("hi all", addressed=Addressing.NONE, respond_only_when_addressed=True)
    assert rule_decision(only, names) == "IGNORE"
    assert rule_decision(group("hi eliza", respond_only_when_addressed=True), names) == "MENTIONED"
    assert rule_decision(dm("hi", ignore=True), names) == "IGNORE"


async def test_direct_message_skips_the_small_model(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("IGNORE"))
    result = await runtime.handle_message(dm("hello"))
    assert result.decision == "DIRECT" and result.text == "Here I am."
    assert len(runtime.model.calls) == 1 and runtime.model.calls[0].params.model == "large-1"


async def test_mention_skips_the_small_model(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("IGNORE"))
    result = await runtime.handle_message(group("what do you think, Eliza?"))
    assert result.decision == "MENTIONED" and result.text == "Here I am."
    assert len(runtime.model.calls) == 1


async def test_bot_message_on_discord_is_ignored_without_a_model_call(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("RESPOND"))
    result = await runtime.handle_message(
        from_discord("Eliza, ping", runtime.character, "b1", bot=True)
    )
    assert result.decision == "IGNORE" and not result.responded
    assert runtime.model.calls == []
    assert await sqlite_store.get(result.message_id) is not None  # still remembered


async def test_small_model_ignore_means_no_reply(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("IGNORE - not for me"))
    result = await runtime.handle_message(group("anyone seen my keys?"))
    assert result.decision == "IGNORE" and result.text is None
    assert len(runtime.model.calls) == 1
    assert runtime.model.calls[0].params.model == runtime.model_config.small
    assert "anyone seen my keys?" in runtime.model.calls[0].messages[-1].content


async def test_unparseable_decision_is_ignore(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("hmm, maybe?"))
    result = await runtime.handle_message(group("random chatter"))
    assert result.decision == "IGNORE"


async def test_stop_mutes_the_room_until_mentioned(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("STOP"))
    first = await runtime.handle_message(group("please stop talking, bot"))
    assert first.decision == "STOP" and first.text is None
    calls = len(runtime.model.calls)
    second = await runtime.handle_message(group("so anyway"))
    assert second.decision == "IGNORE" and len(runtime.model.calls) == calls  # no model call
    third = await runtime.handle_message(group("Eliza, come back"))
    assert third.decision == "MENTIONED" and third.text == "Here I am."


async def test_replayed_ignored_message_is_not_decided_again(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, _decider("IGNORE"))
    await runtime.handle_message(group("chatter", "x1"))
    again = await runtime.handle_message(group("chatter", "x1"))
    assert again.replayed and again.decision == "IGNORE"
    assert len(runtime.model.calls) == 1
