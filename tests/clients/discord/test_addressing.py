"""When the bot answers, and how a Discord message becomes an IncomingMessage."""

from __future__ import annotations

import pytest

from carrier_cli.character import DiscordClientSettings
from carrier_cli.clients.discord.addressing import (
    InboundMessage,
    decide,
    mentions_bot,
    to_incoming,
)
from carrier_cli.runtime.should_respond import names_pattern

BOT = "111"
NAMES = ["Eliza", "eliza_bot"]


def inbound(content: str = "hello", **fields: object) -> InboundMessage:
    values: dict[str, object] = {
        "message_id": "900",
        "channel_id": "500",
        "author_id": "222",
        "author_name": "Alice",
        "author_username": "alice",
        "content": content,
        "clean_content": content,
        "guild_id": "700",
        "guild_name": "Guild",
        "channel_name": "general",
    }
    values.update(fields)
    return InboundMessage(**values)  # type: ignore[arg-type]


def verdict(msg: InboundMessage, **options: object) -> tuple[bool, str, bool]:
    result = decide(msg, bot_id=BOT, options=DiscordClientSettings(**options), names=NAMES)
    return result.handle, result.reason, result.addressed


@pytest.mark.parametrize(
    ("content", "expected"),
    [(f"<@{BOT}> hi", True), (f"hi <@!{BOT}>", True), ("<@1112> hi", False), ("hi", False)],
)
def test_mention_forms(content: str, expected: bool) -> None:
    assert mentions_bot(content, [], BOT) is expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("hey Eliza, help", True),
        ("ELIZA?", True),
        ("ask eliza_bot", True),
        ("elizabeth is here", False),
        ("mail me at x@eliza", False),
        ("nothing here", False),
    ],
)
def test_named_as_a_whole_word(content: str, expected: bool) -> None:
    assert bool(names_pattern(NAMES).search(content)) is expected


def test_own_messages_are_never_handled_even_in_dms() -> None:
    assert verdict(inbound(author_id=BOT, guild_id=None)) == (False, "own message", False)


def test_bots_are_ignored_by_default_and_optionally_heard() -> None:
    assert verdict(inbound(f"<@{BOT}>", author_is_bot=True))[0] is False
    assert verdict(inbound(f"<@{BOT}>", author_is_bot=True), ignore_bots=False)[0] is True


def test_dms_always_answered_unless_ignore_dms() -> None:
    assert verdict(inbound("hi", guild_id=None)) == (True, "dm", True)
    handle, reason, _ = verdict(inbound("hi", guild_id=None), ignore_dms=True)
    assert not handle and "ignore_dms" in reason


def test_guild_mention_reply_and_name_are_addressed() -> None:
    assert verdict(inbound(f"<@{BOT}> yo")) == (True, "mentioned", True)
    assert verdict(inbound("yo", mention_ids=[BOT])) == (True, "mentioned", True)
    assert verdict(inbound("more?", replied_to_author_id=BOT)) == (True, "reply to the bot", True)
    assert verdict(inbound("Eliza, more?")) == (True, "named", True)


def test_other_guild_messages_go_to_should_respond_or_are_stored_when_mentions_only() -> None:
    assert verdict(inbound("chatting")) == (True, "should-respond", False)
    # respond_only_to_mentions is the `mentions` mode: stored (handled), never answered.
    msg = inbound("chatting")
    result = decide(
        msg, bot_id=BOT, options=DiscordClientSettings(respond_only_to_mentions=True), names=NAMES
    )
    assert result.handle and not result.addressed and result.only_when_addressed
    incoming = to_incoming(msg, result)
    assert incoming.respond_only_when_addressed and not incoming.ignore
    assert verdict(inbound(f"<@{BOT}>"), respond_only_to_mentions=True)[0] is True


def modes(**channels: str) -> DiscordClientSettings:
    return DiscordClientSettings(channels={k: {"mode": v} for k, v in channels.items()})


def test_channel_modes_by_id_or_name_and_threads_inherit() -> None:
    options = modes(**{"500": "listen", "general-2": "off", "502": "mentions"})
    listen = decide(inbound(f"<@{BOT}> hi"), bot_id=BOT, options=options, names=NAMES)
    assert listen.handle and listen.listen and not listen.answers
    assert to_incoming(inbound("x"), listen).ignore, "listen: stored, never answered"
    off = decide(
        inbound("hi", channel_id="501", channel_name="general-2"),
        bot_id=BOT,
        options=options,
        names=NAMES,
    )
    assert not off.handle and "off" in off.reason
    thread = inbound("hi", channel_id="601", parent_channel_id="502", channel_name="t")
    inherited = decide(thread, bot_id=BOT, options=options, names=NAMES)
    assert inherited.mode == "mentions" and inherited.handle and not inherited.answers
    followed = inbound("more", channel_id="601", parent_channel_id="502", in_followed_thread=True)
    joined = decide(followed, bot_id=BOT, options=options, names=NAMES)
    assert joined.answers, "a thread the bot follows is answered without a mention"
    listen_thread = inbound("x", channel_id="602", parent_channel_id="500", in_followed_thread=True)
    assert not decide(listen_thread, bot_id=BOT, options=options, names=NAMES).answers
    # An explicit entry wins over allowed_channel_ids; the rest of the list is off.
    both = DiscordClientSettings(allowed_channel_ids=["500"], channels={"503": {"mode": "always"}})
    assert decide(inbound("hi", channel_id="503"), bot_id=BOT, options=both, names=NAMES).handle
    assert not decide(inbound("hi", channel_id="504"), bot_id=BOT, options=both, names=NAMES).handle


def test_thread_room_name_names_its_channel() -> None:
    msg = inbound(
        "hi",
        channel_id="601",
        channel_name="ideas",
        parent_channel_id="500",
        parent_channel_name="general",
    )
    incoming = to_incoming(msg, decide(msg, bot_id=BOT, options=modes(), names=NAMES))
    assert incoming.room_key == "601" and incoming.room_name == "Guild #general > ideas"


def test_allowed_channels_include_threads_of_allowed_channels() -> None:
    allowed = {"allowed_channel_ids": ["500"]}
    assert verdict(inbound(f"<@{BOT}>"), **allowed)[0] is True
    assert verdict(inbound(f"<@{BOT}>", channel_id="501"), **allowed)[0] is False
    thread = inbound(f"<@{BOT}>", channel_id="601", parent_channel_id="500")
    assert verdict(thread, **allowed)[0] is True
    assert verdict(inbound("dm", guild_id=None), **allowed)[0] is True, "DMs are not channels"


def test_mapping_to_incoming_message() -> None:
    attachment = {
        "url": "https://cdn.example/a.png",
        "filename": "a.png",
        "content_type": "image/png",
        "size": 10,
    }
    msg = inbound(
        f"<@{BOT}> look",
        clean_content="@Eliza look",
        attachments=[attachment],
        replied_to_message_id="880",
    )
    result = decide(msg, bot_id=BOT, options=DiscordClientSettings(), names=NAMES)
    incoming = to_incoming(msg, result)
    assert incoming.text == "@Eliza look"
    assert (incoming.source, incoming.room_key, incoming.sender_key) == ("discord", "500", "222")
    assert incoming.message_key == "900"
    assert incoming.sender_name == "Alice"
    assert incoming.room_name == "Guild #general"
    assert incoming.mentions_agent and not incoming.is_direct
    assert incoming.attachments == [attachment]
    assert incoming.metadata["discord"]["in_reply_to"] == "880"
    assert incoming.metadata["sender_names"] == ["Alice", "alice"]

    dm = inbound("hi", guild_id=None, channel_id="42")
    incoming = to_incoming(dm, decide(dm, bot_id=BOT, options=DiscordClientSettings(), names=[]))
    assert incoming.is_direct and incoming.room_key == "42"
    assert incoming.room_name == "DM with Alice"
