"""Which Discord messages reach the runtime, and how they map to an `IncomingMessage`.

Kept free of discord.py objects (the bot copies what it needs into `InboundMessage`) so the
rules (own messages, bots, DMs, allowed channels, mentions-only) are plain functions with
plain tests, and the mapping from Discord ids to rooms, entities and message ids is explicit.

This is the one place that reads `clients.discord` and knows what a Discord mention, reply
or DM is: the runtime gets the verdict in platform-neutral fields (`addressed`, `ignore`,
`respond_only_when_addressed`) and decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from carrier_cli.clients.discord.channels import Mode, channel_mode
from carrier_cli.runtime.should_respond import names_pattern
from carrier_cli.runtime.types import Addressing, IncomingMessage


class DiscordClientOptions(Protocol):
    """What the gate reads from `character.clients.discord`."""

    respond_only_to_mentions: bool
    ignore_bots: bool
    ignore_dms: bool
    allowed_channel_ids: list[str]
    channels: Mapping[str, Any]


@dataclass
class InboundMessage:
    message_id: str
    channel_id: str
    author_id: str
    author_name: str  # display name (server nickname, global name or username)
    author_username: str
    content: str  # as sent, with <@id> mentions
    clean_content: str  # mentions rendered as @name: what the model reads
    guild_id: str | None = None  # None: a DM
    guild_name: str | None = None
    channel_name: str | None = None
    parent_channel_id: str | None = None  # a thread's channel
    parent_channel_name: str | None = None
    in_followed_thread: bool = False  # a thread the bot was mentioned in (or opened)
    author_is_bot: bool = False
    mention_ids: list[str] = field(default_factory=list)
    replied_to_author_id: str | None = None
    replied_to_message_id: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    has_embeds: bool = False

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None


@dataclass(frozen=True)
class Verdict:
    handle: bool
    reason: str  # why (for the debug log): "dm", "mentioned", "own message", ...
    how: Addressing = Addressing.NONE  # how the bot was addressed (NONE when dropped)
    only_when_addressed: bool = False  # the channel's mode is `mentions`
    listen: bool = False  # the channel's mode is `listen`: stored, never answered
    mode: Mode | None = None  # the channel's mode (None: a DM)

    @property
    def addressed(self) -> bool:
        """Mentioned, replied to, named, or in a DM."""
        return self.how is not Addressing.NONE

    @property
    def answers(self) -> bool:
        """Addressed in a place where the bot may answer: the turn will most likely reply
        (typing, the ack reaction, catch-up after a restart)."""
        return self.handle and self.addressed and not self.listen


def mentions_bot(content: str, mention_ids: list[str], bot_id: str) -> bool:
    """`<@id>` and the legacy nickname form `<@!id>` both count, as does discord's own list."""
    return bot_id in mention_ids or f"<@{bot_id}>" in content or f"<@!{bot_id}>" in content


def decide(
    msg: InboundMessage, *, bot_id: str, options: DiscordClientOptions, names: Sequence[str]
) -> Verdict:
    """Whether the bot handles the message, and how it was addressed; the verdict also
    carries the channel's mode (mentions-only, listen) so the runtime applies it without
    reading Discord options. A handled message is stored; whether it is answered is the
    runtime's decision from `how`, `only_when_addressed` and `listen`."""
    mode: Mode | None = None
    if not msg.is_dm:
        mode = channel_mode(
            options,
            msg.channel_id,
            msg.channel_name,
            parent_id=msg.parent_channel_id,
            parent_name=msg.parent_channel_name,
        )
    verdict = _rules(msg, bot_id=bot_id, options=options, names=names, mode=mode)
    return replace(
        verdict, only_when_addressed=mode == "mentions", listen=mode == "listen", mode=mode
    )


def _rules(
    msg: InboundMessage,
    *,
    bot_id: str,
    options: DiscordClientOptions,
    names: Sequence[str],
    mode: Mode | None,
) -> Verdict:
    if msg.author_id == bot_id:
        return Verdict(False, "own message")
    if msg.author_is_bot and options.ignore_bots:
        return Verdict(False, "from a bot (clients.discord.ignore_bots)")
    if msg.is_dm:
        if options.ignore_dms:
            return Verdict(False, "direct message (clients.discord.ignore_dms)")
        return Verdict(True, "dm", Addressing.DIRECT)
    if mode == "off":
        allowed = options.allowed_channel_ids
        if allowed and msg.channel_id not in allowed and msg.parent_channel_id not in allowed:
            return Verdict(False, "channel not in clients.discord.allowed_channel_ids")
        return Verdict(False, "channel mode off (clients.discord.channels)")
    if mentions_bot(msg.content, msg.mention_ids, bot_id):
        return Verdict(True, "mentioned", Addressing.MENTION)
    if msg.replied_to_author_id == bot_id:
        return Verdict(True, "reply to the bot", Addressing.REPLY)
    if names_pattern(names).search(msg.clean_content):
        return Verdict(True, "named", Addressing.NAME)
    if msg.in_followed_thread and mode != "listen":
        # A conversation the bot joined: later messages there are said to it.
        return Verdict(True, "in a thread the bot follows", Addressing.REPLY)
    if mode == "mentions":
        return Verdict(True, "not addressed (mentions mode): stored, not answered")
    return Verdict(True, "should-respond")


def to_incoming(msg: InboundMessage, verdict: Verdict) -> IncomingMessage:
    """Channel/thread/DM id -> room, user id -> entity, message id -> memory id (the runtime
    derives deterministic ids from these keys, so a replayed event is stored once)."""
    if msg.is_dm:
        room_name = f"DM with {msg.author_name}"
    elif msg.parent_channel_id:  # a thread: its own room, named after its channel too
        parent = msg.parent_channel_name or msg.parent_channel_id
        room_name = f"{msg.guild_name or 'server'} #{parent} > {msg.channel_name or msg.channel_id}"
    else:
        room_name = f"{msg.guild_name or 'server'} #{msg.channel_name or msg.channel_id}"
    return IncomingMessage(
        text=msg.clean_content,
        source="discord",
        room_key=msg.channel_id,
        sender_key=msg.author_id,
        sender_name=msg.author_name,
        message_key=msg.message_id,
        room_name=room_name,
        is_direct=msg.is_dm,
        mentions_agent=verdict.addressed,
        sender_is_bot=msg.author_is_bot,
        addressed=verdict.how,
        respond_only_when_addressed=verdict.only_when_addressed,
        # dropped by the rules, or a listen channel: remembered, if passed on, not answered
        ignore=not verdict.handle or verdict.listen,
        attachments=list(msg.attachments),
        metadata={
            "discord": {
                "guild_id": msg.guild_id,
                "channel_id": msg.channel_id,
                "parent_channel_id": msg.parent_channel_id,
                "message_id": msg.message_id,
                "author_username": msg.author_username,
                "in_reply_to": msg.replied_to_message_id,
            },
            "sender_names": sorted({msg.author_name, msg.author_username}),
        },
    )
