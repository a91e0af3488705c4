"""Discord sharding: which of a bot's N gateway shards this process runs.

Discord requires shards above 2,500 guilds and routes each guild to shard
`(guild_id >> 22) % shard_count` (DMs to shard 0). Every process of one bot must use the
same count, and together the processes must run every id in 0..count-1 exactly once, so a
fleet is started as `carrier run --shards 4 --shard-ids 0,1` on one machine and
`--shards 4 --shard-ids 2,3` on the other. `--shards auto` asks Discord (GET /gateway/bot)
and runs all of its recommended shards in this one process; it cannot be combined with
--shard-ids because two processes asking at different times could get different counts.

The rules are checked here, once, for the flags and the settings alike (`plan_from`), and
raise `ConfigError` (exit 2) naming the flag and the setting; discord.py is imported only
to ask Discord for the recommended count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from carrier_cli.errors import ConfigError, RuntimeFailure

log = logging.getLogger("carrier_cli.discord")

AUTO: Literal["auto"] = "auto"
MAX_SHARDS = 10_000  # far above any bot's count; bounds what a typo can start
IDENTIFY_WINDOW = 5.0  # seconds: Discord lets max_concurrency shards IDENTIFY per window

ShardCount = int | Literal["auto"]

SHARDS_FLAG = "--shards (setting discord_shards, CARRIER_DISCORD_SHARDS)"
IDS_FLAG = "--shard-ids (setting discord_shard_ids, CARRIER_DISCORD_SHARD_IDS)"


def parse_shard_count(value: object) -> ShardCount:
    """`auto` or a whole number 1..MAX_SHARDS; ValueError says why not."""
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number of shards ≥ 1 or `{AUTO}`")
    if isinstance(value, int):
        count = value
    else:
        text = str(value).strip().lower()
        if text == AUTO:
            return AUTO
        try:
            count = int(text)
        except ValueError:
            raise ValueError(
                f"must be a whole number of shards ≥ 1 or `{AUTO}`, got {str(value)[:40]!r}"
            ) from None
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"must be between 1 and {MAX_SHARDS} (or `{AUTO}`), got {count}")
    return count


def parse_shard_ids(value: object) -> tuple[int, ...]:
    """`0,1` (or a list of ints): distinct, non-negative shard ids in the given order."""
    if isinstance(value, str):
        parts: list[object] = [p.strip() for p in value.split(",")]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise ValueError("must be a comma-separated list of shard ids such as 0,1")
    if not parts or parts == [""]:
        raise ValueError("is empty; give the shard ids this process runs, such as 0,1")
    ids: list[int] = []
    for part in parts:
        if isinstance(part, bool):
            raise ValueError(f"{part!r} is not a shard id (a whole number ≥ 0)")
        try:
            shard = int(part)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(
                f"{str(part)[:20]!r} is not a shard id (a whole number ≥ 0); "
                "separate ids with commas, such as 0,1"
            ) from None
        if shard < 0:
            raise ValueError(f"shard id {shard} is negative; ids run from 0 to count-1")
        if shard in ids:
            raise ValueError(f"lists shard {shard} twice; each id may appear once")
        ids.append(shard)
    return tuple(ids)


@dataclass(frozen=True)
class ShardPlan:
    """What this process runs: `count` shards in all (`auto`: Discord's recommendation,
    resolved at start), of which `ids` here (None: every id 0..count-1)."""

    count: ShardCount
    ids: tuple[int, ...] | None = None

    def resolved(self, count: int) -> ShardPlan:
        return ShardPlan(count, self.ids)

    @property
    def shard_ids(self) -> list[int]:
        """The ids this process runs (only once `count` is a number)."""
        assert isinstance(self.count, int)
        return list(self.ids) if self.ids is not None else list(range(self.count))

    def describe(self) -> str:
        """For the status line: `shards 0, 1 of 4` / `shard 1 of 2` / `all 3 shards`."""
        if not isinstance(self.count, int):
            return f"shards: {AUTO}"
        if self.ids is None:
            return f"all {self.count} shard{'s' if self.count != 1 else ''}"
        names = ", ".join(str(i) for i in self.ids)
        return f"shard{'s' if len(self.ids) != 1 else ''} {names} of {self.count}"


def plan_from(count: object, ids: object) -> ShardPlan | None:
    """The plan for a shard count and shard ids as given (flags or settings); None: no
    sharding at all (discord.py's plain single-connection client, as without the flags).

    Raises ConfigError (exit 2) naming --shards / --shard-ids and their settings.
    """
    if count is None:
        if ids is not None:
            raise ConfigError(
                f"{IDS_FLAG} was given without {SHARDS_FLAG}.",
                hint="Shard ids only mean something with the total count every process "
                "shares: add --shards N (e.g. --shards 2 --shard-ids 0).",
            )
        return None
    try:
        total = parse_shard_count(count)
    except ValueError as exc:
        raise ConfigError(
            f"{SHARDS_FLAG} {exc}.", hint="Example: --shards 4, or --shards auto."
        ) from None
    if ids is None:
        return ShardPlan(total)
    try:
        shard_ids = parse_shard_ids(ids)
    except ValueError as exc:
        raise ConfigError(
            f"{IDS_FLAG} {exc}.", hint="Example: --shards 4 --shard-ids 0,1."
        ) from None
    if not isinstance(total, int):  # auto
        raise ConfigError(
            f"{IDS_FLAG} cannot be combined with --shards {AUTO}.",
            hint="Processes that split one bot's shards must agree on the count, and Discord's "
            "recommendation may change between their starts: give the count, e.g. "
            "--shards 4 --shard-ids 0,1 here and --shards 4 --shard-ids 2,3 elsewhere.",
        )
    outside = [i for i in shard_ids if i >= total]
    if outside:
        raise ConfigError(
            f"{IDS_FLAG} names shard {outside[0]}, but with --shards {total} the ids run from "
            f"0 to {total - 1}.",
            hint=f"Pick ids between 0 and {total - 1}, or raise --shards.",
        )
    return ShardPlan(total, shard_ids)


@dataclass(frozen=True)
class GatewayInfo:
    """Discord's answer to GET /gateway/bot: how many shards it recommends for the bot and
    how many of them may IDENTIFY together (per 5 s window)."""

    shards: int
    max_concurrency: int
    remaining_starts: int | None


async def gateway_info(http: object, character_name: str) -> GatewayInfo:
    """Ask Discord (through the bot's own discord.py HTTP client, logged in) about shards."""
    import discord

    try:
        shards, _url, limit = await http.get_bot_gateway()  # type: ignore[attr-defined]
    except discord.GatewayNotFound as exc:
        raise RuntimeFailure(
            f"Could not ask Discord how many shards the bot of character {character_name!r} "
            f"needs (GET /gateway/bot failed: {exc.__cause__ or exc}).",
            hint="Give the count yourself with --shards N, or check CARRIER_DISCORD_API_BASE.",
        ) from exc
    limit = limit or {}
    concurrency = limit.get("max_concurrency") or 1
    remaining = limit.get("remaining")
    return GatewayInfo(
        shards=max(1, int(shards)),
        max_concurrency=max(1, int(concurrency)),
        remaining_starts=int(remaining) if remaining is not None else None,
    )


def identify_pause(position: int, max_concurrency: int) -> float:
    """Seconds to wait before the IDENTIFY of the `position`-th shard this process starts.

    discord.py waits 5 s before every shard but the first; Discord allows max_concurrency
    IDENTIFYs per 5 s window, so only the first shard of each group of max_concurrency waits.
    """
    if position == 0 or position % max(1, max_concurrency):
        return 0.0
    return IDENTIFY_WINDOW


def shard_of(guild_id: int | str | None, count: int) -> int:
    """The shard Discord routes a guild's events to (DMs: None, shard 0)."""
    if guild_id is None:
        return 0
    return (int(guild_id) >> 22) % count
