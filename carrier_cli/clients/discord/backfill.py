"""History backfill: the last `clients.discord.backfill` messages of each channel the bot
stores (modes always / mentions / listen) read into memory on start and on joining a guild.

Backfilled messages are stored and never answered: each goes through the runtime as an
`ignore` message (stored in its room, in order, no model call) and is marked answered so
catch-up after a later restart leaves it alone. A message already stored (by a live turn,
or a previous backfill: memory ids are derived from Discord's message ids) is skipped
without touching it, so a second start stores nothing new and answers nothing.

Bounded and gentle on Discord's rate limits: at most MAX_PER_CHANNEL messages per channel
(discord.py reads 100 per request: two requests per channel at most), one channel and one
guild at a time (discord.py waits out any 429 itself), and each guild once per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any

import discord

from carrier_cli.clients.discord.addressing import decide, to_incoming
from carrier_cli.clients.discord.channels import STORED_MODES, channel_mode

log = logging.getLogger("carrier_cli.discord")

MAX_PER_CHANNEL = 200


class Backfill:
    """`bot`: the CarrierDiscordBot (not imported: it imports this module); `read` copies a
    discord.py message into an InboundMessage (bot.inbound_from) and `kinds` are the message
    types that are conversation (joins, pins and thread notices are not)."""

    def __init__(
        self,
        bot: Any,
        read: Callable[[discord.Message], Any],
        kinds: Collection[discord.MessageType],
    ) -> None:
        self._bot = bot
        self._read = read
        self._kinds = kinds
        # guild id -> its backfill, started once per process (READY's guilds, and the
        # guild_available/guild_join events that may come for the same guild, share it)
        self._tasks: dict[int, asyncio.Task[int]] = {}
        self._lock = asyncio.Lock()  # one guild at a time
        self.stored = 0  # messages stored by backfill in this process (tests, logs)

    @property
    def limit(self) -> int:
        return max(0, min(MAX_PER_CHANNEL, int(self._bot.options.backfill or 0)))

    async def guild(self, guild: discord.Guild) -> int:
        """Backfill one guild once (a second call waits for the first); returns the
        messages stored. Never raises but CancelledError (a failure is logged: the bot runs
        on without the history)."""
        task = self.start(guild)
        return 0 if task is None else await asyncio.shield(task)

    def start(self, guild: discord.Guild) -> asyncio.Task[int] | None:
        """The guild's backfill task, started on the first call (None: backfill is off).
        Tasks run one guild at a time, in the order they were started."""
        if self.limit <= 0:
            return None
        task = self._tasks.get(guild.id)
        if task is None:
            task = asyncio.create_task(self._guild(guild), name=f"discord:backfill:{guild.id}")
            self._tasks[guild.id] = task
        return task

    async def wait(self) -> None:
        """Until every backfill started so far has ended (tests, logs)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    def cancel(self) -> list[asyncio.Task[int]]:
        running = [t for t in self._tasks.values() if not t.done()]
        for task in running:
            task.cancel()
        return running

    async def _guild(self, guild: discord.Guild) -> int:
        async with self._lock:
            stored = 0
            try:
                # Text channels, then the active threads Discord listed (GUILD_CREATE):
                # each thread is its own room, in its parent's mode.
                channels: list[discord.TextChannel | discord.Thread] = [
                    *guild.text_channels,
                    *guild.threads,
                ]
                for channel in channels:
                    if not self._bot.accepting:
                        break
                    stored += await self._channel(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "Discord: backfill of guild %s failed: %s: %s",
                    guild.name,
                    type(exc).__name__,
                    exc,
                )
            if stored:
                log.info("Discord: backfilled %d message(s) in %s", stored, guild.name)
            self.stored += stored
            return stored

    async def _channel(self, channel: discord.TextChannel | discord.Thread) -> int:
        from carrier_cli.runtime.turn.ids import message_id

        bot = self._bot
        options = bot.options
        parent = getattr(channel, "parent", None)
        parent_id = getattr(channel, "parent_id", None)
        mode = channel_mode(
            options,
            str(channel.id),
            channel.name,
            parent_id=str(parent_id) if parent_id else None,
            parent_name=getattr(parent, "name", None),
        )
        if mode not in STORED_MODES:
            return 0
        runtime: Any = bot.runtime
        store = getattr(runtime, "store", None)
        agent_id = getattr(runtime, "agent_id", None)
        if bot.user is None or store is None or agent_id is None:
            return 0
        try:
            history = [m async for m in channel.history(limit=self.limit)]
        except discord.HTTPException as exc:  # 403: no Read Message History here
            log.info("Discord: not backfilling #%s: %s", channel.name, exc)
            return 0
        stored = 0
        for message in reversed(history):  # oldest first: the room's order
            if message.type not in self._kinds or message.author.id == bot.user.id:
                continue  # our own messages are stored as replies already
            inbound = self._read(message)
            verdict = decide(
                inbound, bot_id=str(bot.user.id), options=options, names=bot.character_names
            )
            if not verdict.handle:
                continue  # the rules drop it live too (another bot, an off channel)
            incoming = to_incoming(inbound, verdict)
            incoming.ignore = True  # stored, never answered
            if await store.get(message_id(incoming, agent_id), with_vector=False) is not None:
                continue  # already stored: live, or by an earlier backfill
            await runtime.handle_message(incoming)
            await bot._mark_answered(inbound.message_id, "backfilled (stored, not answered)")
            stored += 1
        return stored
