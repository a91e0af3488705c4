"""Threads: which ones the bot follows, and opening one for a conversation.

A thread is its own room (its id is the room key, as a channel's is). The bot follows a
thread once it was mentioned there or opened it (`clients.discord.reply_in_thread`): later
messages in it are answered without a mention, as in a conversation it joined. Followed
threads are remembered in the memory database's cache (30 days) as well as in a bounded
in-process set, so a restart, or another process of the same bot, keeps following them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Final, Literal

import discord

from carrier_cli.text import one_line

log = logging.getLogger("carrier_cli.discord")

FOLLOW_TTL = 30 * 86400.0  # seconds a followed thread is remembered after the last mention
FOLLOW_LIMIT = 5000  # threads remembered in-process (the cache holds the rest)
THREAD_NAME_MAX = 100  # Discord's limit on a thread name
ARCHIVE_MINUTES: Final[Literal[1440]] = (
    1440  # a day of inactivity: Discord's default for a new thread
)
THREAD_ALREADY_EXISTS = 160004  # Discord: "A thread has already been created for this message"


def is_thread(channel: Any) -> bool:
    return isinstance(channel, discord.Thread)


class FollowedThreads:
    """The threads the bot follows. `store`: the runtime's MemoryStore (or None)."""

    def __init__(self, store: Any, agent_id: Any) -> None:
        self._store = store
        self._agent_id = agent_id
        self._known: OrderedDict[str, bool] = OrderedDict()  # thread id -> followed
        self._locks: dict[str, list[Any]] = {}  # thread id -> [lock, holders and waiters]

    @contextlib.asynccontextmanager
    async def in_order(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's FIFO lock (asyncio.Lock wakes waiters in arrival order); the
        lock is dropped once nobody holds or waits for it, so there is one per busy thread."""
        entry = self._locks.get(thread_id)
        if entry is None:
            entry = self._locks[thread_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(thread_id, None)

    def _key(self, thread_id: str) -> str:
        return f"discord:thread:{self._agent_id}:{thread_id}"

    async def follows(self, thread_id: str) -> bool:
        known = self._known.get(thread_id)
        if known is not None:
            self._known.move_to_end(thread_id)
            return known
        followed = False
        if self._store is not None:
            try:
                followed = await self._store.cache_get(self._key(thread_id)) is not None
            except Exception as exc:  # a cache failure must not drop the message
                log.debug("Discord: could not look up thread %s: %s", thread_id, exc)
        if thread_id in self._known:  # followed while we asked (a mention came meanwhile)
            return self._known[thread_id]
        self._remember(thread_id, followed)
        return followed

    async def follow(self, thread_id: str) -> None:
        self._remember(thread_id, True)
        if self._store is not None:
            try:
                await self._store.cache_set(self._key(thread_id), "1", ttl=FOLLOW_TTL)
            except Exception as exc:
                log.warning("Discord: could not remember thread %s: %s", thread_id, exc)

    def _remember(self, thread_id: str, followed: bool) -> None:
        self._known[thread_id] = followed
        self._known.move_to_end(thread_id)
        while len(self._known) > FOLLOW_LIMIT:
            self._known.popitem(last=False)


async def resolve_thread(client: discord.Client, channel_id: str) -> discord.Thread | None:
    """A guild channel discord.py has not cached (e.g. a private thread the bot was added
    to without a THREAD_CREATE it saw): one GET /channels/{id}, so the thread gets its
    parent channel's mode. None if it is not a thread or Discord will not say."""
    try:
        channel = await client.fetch_channel(int(channel_id))
    except discord.HTTPException as exc:
        log.debug("Discord: could not look up channel %s: %s", channel_id, exc)
        return None
    return channel if isinstance(channel, discord.Thread) else None


def thread_name(text: str, author: str) -> str:
    """A thread name from the message that starts it (Discord allows 1..100 characters)."""
    name = one_line(text.replace("\n", " ").strip(), THREAD_NAME_MAX) or f"Chat with {author}"
    return name[:THREAD_NAME_MAX]


async def open_thread(message: discord.Message, name: str) -> discord.Thread | None:
    """A public thread on `message` (POST /channels/{c}/messages/{m}/threads), or the one
    already opened on it (a replayed turn: Discord gives a message one thread, whose id is
    the message's). None when Discord refuses (no Create Public Threads permission):
    the bot then answers in the channel."""
    try:
        return await message.create_thread(name=name, auto_archive_duration=ARCHIVE_MINUTES)
    except discord.HTTPException as exc:
        if exc.code == THREAD_ALREADY_EXISTS and message.guild is not None:
            existing = message.guild.get_thread(message.id)
            if existing is not None:
                return existing
            with contextlib.suppress(discord.HTTPException):
                fetched = await message.guild.fetch_channel(message.id)
                if isinstance(fetched, discord.Thread):
                    return fetched
        log.warning(
            "Discord: could not open a thread on message %s (%s); answering in the channel. "
            "Give the bot the Create Public Threads and Send Messages in Threads permissions.",
            message.id,
            exc,
        )
        return None
