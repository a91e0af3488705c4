"""What the Discord client reads of the settings, as one small frozen object.

`Settings` holds every component's fields; the bot needs ten of them. The client's
entry points (`run_discord_client`, `preflight` in runner.py) take the settings, as the
`carrier.clients` interface says, and build this once; everything below them takes
`DiscordOptions`. This module is the only place the Discord code reads `Settings`
fields by name (the bot token is resolved in runner.py, per character, and is not here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from carrier_cli.clients.discord.sharding import ShardPlan, plan_from

if TYPE_CHECKING:
    from carrier_cli.config import Settings


@dataclass(frozen=True, kw_only=True)
class DiscordOptions:
    """The process-wide Discord settings (a character's own `clients.discord` block is
    separate: the bot's `options` property)."""

    api_base: str | None  # REST base URL override (gateway proxies, tests)
    gateway_url: str | None  # gateway websocket URL override
    max_concurrent_turns: int  # model calls at once per bot
    turn_timeout: float  # seconds before a turn is cancelled
    apology: str  # sent when a turn fails; blank: none
    typing_interval: float  # seconds between typing indicators
    catch_up_minutes: float  # answer what went unanswered in the last N minutes; 0: off
    shutdown_grace: float  # seconds to finish in-flight turns on stop
    shards: ShardPlan | None = None  # None: one unsharded connection, as without --shards
    sync_commands: bool = False  # sync slash commands globally on start (--sync-commands)

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscordOptions:
        return cls(
            api_base=settings.discord_api_base,
            gateway_url=settings.discord_gateway_url,
            max_concurrent_turns=settings.discord_max_concurrent_turns,
            turn_timeout=settings.discord_turn_timeout,
            apology=settings.discord_apology,
            typing_interval=settings.discord_typing_interval,
            catch_up_minutes=settings.discord_catch_up_minutes,
            shutdown_grace=settings.shutdown_grace,
            shards=plan_from(settings.discord_shards, settings.discord_shard_ids),
            sync_commands=settings.discord_sync_commands,
        )
