"""Per-channel modes (`clients.discord.channels`), and how the older settings map onto them.

A channel's mode says what the bot does with a message there:

  always    answer what the should-respond step accepts (mentions, replies, the name,
            and chatter the small model finds worth answering)
  mentions  answer only when addressed (mention, reply to the bot, its name); every
            other message is still stored, so the agent knows the conversation
  listen    store every message, never answer (not even a mention)
  off       ignore the channel: nothing stored, nothing answered

A thread has no entry of its own unless one is written for its id or name; it inherits its
parent channel's mode. Without a `channels` entry the older settings decide: a channel
outside a non-empty `allowed_channel_ids` is `off`, `respond_only_to_mentions: true` makes
the rest `mentions`, and otherwise a channel is `always`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

Mode = Literal["always", "mentions", "listen", "off"]
MODES: tuple[Mode, ...] = ("always", "mentions", "listen", "off")
STORED_MODES: frozenset[Mode] = frozenset({"always", "mentions", "listen"})  # backfilled too


class ChannelOptions(Protocol):
    respond_only_to_mentions: bool
    allowed_channel_ids: list[str]
    channels: Mapping[str, Any]


def _explicit(channels: Mapping[str, Any], *keys: str | None) -> Mode | None:
    """The first configured mode among `keys` (ids or names, a leading '#' allowed)."""
    for key in keys:
        if not key:
            continue
        for candidate in (key, f"#{key}"):
            entry = channels.get(candidate)
            if entry is not None:
                mode = getattr(entry, "mode", None) or (
                    entry.get("mode") if isinstance(entry, Mapping) else None
                )
                if mode in MODES:
                    return mode  # type: ignore[no-any-return]
    return None


def channel_mode(
    options: ChannelOptions,
    channel_id: str,
    channel_name: str | None = None,
    *,
    parent_id: str | None = None,
    parent_name: str | None = None,
) -> Mode:
    """The mode of a guild channel or thread (DMs have no mode: the DM rules apply)."""
    channels: Mapping[str, Any] = getattr(options, "channels", None) or {}
    mode = _explicit(channels, channel_id, channel_name) or _explicit(
        channels, parent_id, parent_name
    )
    if mode is not None:
        return mode
    allowed = options.allowed_channel_ids
    if allowed and channel_id not in allowed and parent_id not in allowed:
        return "off"
    return "mentions" if options.respond_only_to_mentions else "always"
