"""The bot on several gateway shards: discord.py's AutoShardedClient with explicit ids.

A mixin rather than a second bot class, so the plain bot and the metered one (metrics on)
both get it: `sharded(base)` builds `(ShardedBot, base, AutoShardedClient)`, whose order
puts the bot's own event handlers first and AutoShardedClient's connection logic in place
of Client's. Everything else (turns, catch-up, shutdown) is the bot's, unchanged; the
shard routing itself is Discord's: this process only receives events of its own shards.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from carrier_cli.clients.discord.bot import CarrierDiscordBot
from carrier_cli.clients.discord.options import DiscordOptions
from carrier_cli.clients.discord.sharding import identify_pause, shard_of

log = logging.getLogger("carrier_cli.discord")


class ShardedBot(CarrierDiscordBot):
    """Runs `config.shards.shard_ids` of `config.shards.count` (a resolved plan)."""

    max_concurrency: int = 1  # IDENTIFYs Discord allows per 5 s window (GET /gateway/bot)

    def _client_options(self, config: DiscordOptions) -> dict[str, Any]:
        plan = config.shards
        assert plan is not None and isinstance(plan.count, int), "resolve `auto` first"
        self._shard_count = plan.count
        self._own_shards = frozenset(plan.shard_ids)
        self._identified: list[int] = []
        return {"shard_count": plan.count, "shard_ids": plan.shard_ids}

    @property
    def initial_connections(self) -> int:
        return len(self._own_shards)

    def owns_guild(self, guild_id: int | str | None) -> bool:
        return shard_of(guild_id, self._shard_count) in self._own_shards

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """At start, pause only between groups of max_concurrency shards (discord.py waits
        5 s before every shard but the first); a later re-IDENTIFY keeps discord.py's pause."""
        if shard_id is None or shard_id in self._identified:
            await super().before_identify_hook(shard_id, initial=initial)
            return
        pause = identify_pause(len(self._identified), self.max_concurrency)
        self._identified.append(shard_id)
        if pause:
            import asyncio

            log.info("Discord: waiting %.0fs before identifying shard %d", pause, shard_id)
            await asyncio.sleep(pause)

    async def on_shard_ready(self, shard_id: int) -> None:
        guilds = sum(1 for guild in self.guilds if guild.shard_id == shard_id)
        log.info(
            "Discord: shard %d of %d ready for %s (%d guild%s)",
            shard_id,
            self._shard_count,
            self.runtime.character.name,
            guilds,
            "" if guilds == 1 else "s",
        )


def sharded(base: type[CarrierDiscordBot]) -> type[CarrierDiscordBot]:
    """`base` (the bot, or the metered bot) on discord.py's AutoShardedClient."""
    bases: tuple[type, ...] = (
        (ShardedBot, discord.AutoShardedClient)
        if base is CarrierDiscordBot
        else (ShardedBot, base, discord.AutoShardedClient)
    )
    return type(f"Sharded{base.__name__}", bases, {})
