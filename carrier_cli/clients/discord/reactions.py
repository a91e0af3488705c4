"""Reactions: feedback on the bot's replies, and the acknowledgement while it thinks.

Feedback: a configured positive (default 👍) or negative (default 👎) reaction on one of
the bot's replies is stored as a `feedback` memory linked to that reply (memory/feedback.py);
removing the reaction deletes it. The link from a Discord message to the reply's memory
is kept in the memory database's cache for REPLY_TTL when the reply is sent, so it works
after a restart and in every process of the bot. Reactions on anything else are ignored.

Acknowledgement (`clients.discord.ack_reaction`): the bot puts that reaction on a message
it is about to answer and takes it off once the turn ends, whatever the outcome. Both are
best effort: a missing Add Reactions permission is logged once and never fails a turn.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import discord

from carrier_cli.memory.feedback import Feedback, Polarity, record_feedback, remove_feedback

log = logging.getLogger("carrier_cli.discord")

REPLY_TTL = 30 * 86400.0  # seconds a reply accepts feedback after it was sent
# A reaction on our message whose link is not stored yet (it can come while the chunk's
# POST is still being answered and the link written): looked up again after these pauses.
LINK_RETRIES = (0.1, 0.2, 0.4, 0.8)
SOURCE = "discord"


def _reply_key(agent_id: Any, message_id: int | str) -> str:
    return f"discord:reply:{agent_id}:{message_id}"


def polarity(options: Any, emoji: str) -> Polarity | None:
    if emoji in (options.feedback_positive or []):
        return "positive"
    if emoji in (options.feedback_negative or []):
        return "negative"
    return None


def reply_links(
    agent_id: Any,
    message_ids: list[int],
    reply_id: uuid.UUID | None,
    turn_id: uuid.UUID | None,
) -> list[tuple[str, Any, float | None]]:
    """The cache entries (key, value, ttl) linking each sent chunk (a Discord message) to
    the reply's memory and its turn, for `MemoryStore.cache_set_many`."""
    if reply_id is None or not message_ids:
        return []
    value = {"reply_id": str(reply_id), "turn_id": str(turn_id) if turn_id else None}
    return [(_reply_key(agent_id, message_id), value, REPLY_TTL) for message_id in message_ids]


async def remember_reply(
    store: Any,
    agent_id: Any,
    message_ids: list[int],
    reply_id: uuid.UUID | None,
    turn_id: uuid.UUID | None,
) -> None:
    """Link each sent chunk to the reply's memory and its turn, in one transaction. (A
    turn's links are written with its answered mark instead: DiscordBot._mark_answered.)"""
    links = reply_links(agent_id, message_ids, reply_id, turn_id)
    if store is None or not links:
        return
    try:
        await store.cache_set_many(links)
    except Exception as exc:  # no feedback on this reply, but the reply went out
        log.warning("Discord: could not link messages %s to their reply: %s", message_ids, exc)


async def on_reaction(
    runtime: Any, payload: discord.RawReactionActionEvent, *, added: bool, bot_id: int
) -> str | None:
    """Store or remove feedback for a reaction event; returns what was done (for logs and
    tests) or None when the reaction is not feedback on one of our replies."""
    if payload.user_id == bot_id:
        return None  # our own ack reaction
    options = runtime.character.clients.discord
    emoji = str(payload.emoji)
    kind = polarity(options, emoji)
    store = getattr(runtime, "store", None)
    agent_id = getattr(runtime, "agent_id", None)
    if kind is None or store is None or agent_id is None:
        return None
    author = getattr(payload, "message_author_id", None)
    if added and author is not None and author != bot_id:
        return None  # Discord says whose message it is: not ours
    if not added:
        removed = await remove_feedback(
            store,
            agent_id,
            source=SOURCE,
            platform_message_id=str(payload.message_id),
            person_key=str(payload.user_id),
            reaction=emoji,
        )
        return "removed" if removed else None
    key = _reply_key(agent_id, payload.message_id)
    link = await store.cache_get(key)
    if link is None and author == bot_id:
        for pause in LINK_RETRIES:
            await asyncio.sleep(pause)
            link = await store.cache_get(key)
            if link is not None:
                break
    if not isinstance(link, dict) or not link.get("reply_id"):
        return None  # not a reply of ours (or older than REPLY_TTL)
    turn_id = uuid.UUID(link["turn_id"]) if link.get("turn_id") else None
    room_id = None
    if turn_id is not None:
        incoming = await store.get(turn_id, with_vector=False)
        room_id = incoming.room_id if incoming is not None else None
    member = getattr(payload, "member", None)
    await record_feedback(
        store,
        agent_id,
        Feedback(
            reply_id=uuid.UUID(link["reply_id"]),
            turn_id=turn_id,
            polarity=kind,
            reaction=emoji,
            person_key=str(payload.user_id),
            person_name=member.display_name if member is not None else None,
        ),
        source=SOURCE,
        platform_message_id=str(payload.message_id),
        room_id=room_id,
    )
    return f"stored {kind}"


class Acknowledger:
    """Puts `ack_reaction` on a message while its turn runs (PUT .../reactions/{e}/@me) and
    takes it off after (DELETE .../reactions/{e}/@me)."""

    def __init__(self) -> None:
        self._warned = False

    async def add(self, message: discord.Message, emoji: str) -> bool:
        try:
            await message.add_reaction(emoji)
            return True
        except discord.HTTPException as exc:
            self._warn(exc)
            return False

    async def remove(self, message: discord.Message, emoji: str, me: Any) -> None:
        try:
            await message.remove_reaction(emoji, me)
        except discord.HTTPException as exc:
            self._warn(exc)

    def _warn(self, exc: discord.HTTPException) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "Discord: the ack reaction failed (%s); give the bot the Add Reactions and "
                "Read Message History permissions, or unset clients.discord.ack_reaction",
                exc,
            )
        else:
            log.debug("Discord: ack reaction failed: %s", exc)
