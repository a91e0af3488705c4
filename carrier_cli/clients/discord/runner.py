"""Running one character's Discord bot until asked to stop, with operator-grade errors.

discord.py reports a bad token, refused privileged intents and a dead gateway as its own
exceptions with terse messages; here they become `RuntimeFailure`s that say what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.discord.endpoints import configure_endpoints
from carrier_cli.clients.discord.options import DiscordOptions
from carrier_cli.clients.discord.sharding import AUTO, GatewayInfo, ShardPlan, gateway_info
from carrier_cli.errors import ConfigError, RuntimeFailure
from carrier_cli.metrics import active as active_metrics
from carrier_cli.state import register_secret

if TYPE_CHECKING:
    # The edge: the `carrier.clients` interface hands a client the settings; the bot
    # below gets the `DiscordOptions` built from them here.
    from carrier_cli.config import Settings

log = logging.getLogger("carrier_cli.discord")

_TOKENS_IN_USE: dict[str, str] = {}  # token -> character name, in this process


def resolve_token(character: Any, settings: Settings) -> tuple[str, str]:
    """(token, where it came from). A character's own `clients.discord.token_key` wins over
    the shared DISCORD_API_TOKEN / `carrier keys set discord`."""
    key = character.clients.discord.token_key
    if key and key != "discord":
        from carrier_cli.secrets import SecretStore

        stored = SecretStore().get(key)
        if stored is None:
            raise ConfigError(
                f"Character {character.name!r} names clients.discord.token_key {key!r}, but no "
                f"key of that name is stored.",
                hint=f"Store the bot token with `carrier keys set {key}`.",
            )
        return stored.value, f"stored key '{key}'"
    token = settings.secret("discord_api_token")
    if not token:
        raise ConfigError(
            f"No Discord bot token for character {character.name!r}.",
            hint="Set DISCORD_API_TOKEN or run `carrier keys set discord` (a per-character "
            "token: `carrier keys set discord:NAME` and clients.discord.token_key in the "
            "character file).",
        )
    return token, "discord_api_token"


class _NoVoiceWarnings(logging.Filter):
    """discord.py warns on every start that voice libraries are missing; bots here never
    use voice, so the warning is noise in an operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


async def preflight(characters: Sequence[Any], settings: Settings) -> None:
    """Before any runtime is opened: every character has a token, no two share one, and
    Discord accepts each (one GET /users/@me through discord.py's own HTTP client). The
    options come first: a bad shard setting is refused before any token is looked at."""
    options = DiscordOptions.from_settings(settings)
    owners: dict[str, str] = {}
    for character in characters:
        token, origin = resolve_token(character, settings)
        register_secret(token)
        other = owners.get(token)
        if other is not None:
            raise _shared_token_error(other, character.name, origin)
        owners[token] = character.name
    configure_endpoints(options.api_base, options.gateway_url)
    await asyncio.gather(*(_check_login(token, name) for token, name in owners.items()))


@contextlib.asynccontextmanager
async def _logged_in(token: str, character_name: str) -> AsyncIterator[Any]:
    """discord.py's REST client logged in with the bot's token; a login or REST failure
    leaves as the one explained error (_explain), and the client is always closed."""
    import discord

    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(token)
        yield http
    except RuntimeFailure:
        raise
    except Exception as exc:
        explained = _explain(exc, character_name)
        if explained is None:
            raise
        raise explained from exc
    finally:
        await http.close()


async def _check_login(token: str, character_name: str) -> None:
    async with _logged_in(token, character_name):
        pass


def _shared_token_error(first: str, second: str, origin: str) -> ConfigError:
    key = f"discord:{second.lower()}"
    return ConfigError(
        f"Characters {first!r} and {second!r} would use the same Discord bot token ({origin}); "
        "one bot can serve only one character.",
        hint="Create a second application in the developer portal, store its token with "
        f"`carrier keys set {key}` and set clients.discord.token_key: {key} in the "
        f"character file of {second!r}.",
    )


async def _ask_gateway(token: str, character_name: str) -> GatewayInfo:
    """GET /gateway/bot with the bot's token: the recommended shard count and how many
    shards may IDENTIFY together."""
    async with _logged_in(token, character_name) as http:
        return await gateway_info(http, character_name)


def _resolve(plan: ShardPlan, gateway: GatewayInfo, character: Any) -> ShardPlan:
    """`auto` becomes Discord's recommendation; a fixed count below it is run as asked
    (Discord refuses it, close code 4011, only when the bot really needs more shards)."""
    if plan.count == AUTO:
        plan = plan.resolved(gateway.shards)
        log.info(
            "Discord: %s runs %d shard%s (Discord's recommendation)",
            character.name,
            gateway.shards,
            "" if gateway.shards == 1 else "s",
        )
    elif isinstance(plan.count, int) and plan.count < gateway.shards:
        log.warning(
            "Discord recommends %d shards for the bot of %s; running %d as --shards says "
            "(every process of the bot must be restarted with the new count to change it)",
            gateway.shards,
            character.name,
            plan.count,
        )
    starts = len(plan.shard_ids)
    if gateway.remaining_starts is not None and gateway.remaining_starts < starts:
        log.warning(
            "Discord allows %d more session starts today for the bot of %s; %d shard%s "
            "will try to start",
            gateway.remaining_starts,
            character.name,
            starts,
            "" if starts == 1 else "s",
        )
    return plan


def _print_status(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _explain(exc: BaseException, character_name: str) -> RuntimeFailure | None:
    import discord

    who = f"the Discord bot of character {character_name!r}"
    if isinstance(exc, discord.LoginFailure) or (
        isinstance(exc, discord.ConnectionClosed) and exc.code == 4004
    ):
        return RuntimeFailure(
            f"Discord rejected the token of {who} (401 Unauthorized / close code 4004).",
            hint="Copy the token again from the developer portal (Bot > Reset Token) and store "
            "it with `carrier keys set discord` or DISCORD_API_TOKEN.",
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return RuntimeFailure(
            f"Discord refused the privileged intents requested by {who} (close code 4014).",
            hint="In https://discord.com/developers/applications open the application, go to "
            "Bot > Privileged Gateway Intents, enable MESSAGE CONTENT INTENT, save, and run "
            "again.",
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code in (4010, 4011):
        needs = "more shards than it was started with" if exc.code == 4011 else "a valid shard"
        return RuntimeFailure(
            f"Discord refused the shard of {who} (close code {exc.code}): the bot needs {needs}.",
            hint="Start it with --shards auto (Discord's recommended count, all in one "
            "process), or give every process of the bot a larger --shards N with --shard-ids "
            "that together cover 0..N-1.",
        )
    if isinstance(exc, discord.ConnectionClosed):
        return RuntimeFailure(
            f"The Discord gateway closed the connection of {who} (close code {exc.code}: "
            f"{exc.reason or 'no reason given'}).",
            hint="Check the bot's configuration in the developer portal; run with --debug "
            "for details.",
        )
    if isinstance(exc, discord.HTTPException):
        return RuntimeFailure(
            f"Discord answered {exc.status} to {who}: {exc.text or exc}.",
            hint="Check CARRIER_DISCORD_API_BASE if you set it, and Discord's status page.",
        )
    if isinstance(exc, OSError | TimeoutError):
        return RuntimeFailure(
            f"Could not reach Discord for {who}: {exc}.",
            hint="Check the network, a proxy, or CARRIER_DISCORD_API_BASE / "
            "CARRIER_DISCORD_GATEWAY_URL if you set them.",
        )
    return None


async def run_discord_client(
    runtime: Any,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    on_status: Callable[[str], None] | None = _print_status,
) -> None:
    """Serve `runtime`'s character on Discord until `stop_event` is set, then drain in-flight
    turns within settings.shutdown_grace and disconnect. Raises RuntimeFailure/ConfigError
    when the bot cannot run (bad token, refused intents, unreachable Discord)."""
    from carrier_cli.clients.discord.bot import CarrierDiscordBot

    character = runtime.character
    token, origin = resolve_token(character, settings)
    register_secret(token)
    other = _TOKENS_IN_USE.get(token)
    if other is not None and other != character.name:
        raise _shared_token_error(other, character.name, origin)
    options = DiscordOptions.from_settings(settings)
    configure_endpoints(options.api_base, options.gateway_url)
    gateway: GatewayInfo | None = None
    if options.shards is not None:  # before the token is taken: this may fail
        gateway = await _ask_gateway(token, character.name)
        options = dataclasses.replace(options, shards=_resolve(options.shards, gateway, character))
    _TOKENS_IN_USE[token] = character.name
    voice_logger = logging.getLogger("discord.client")
    if not any(isinstance(f, _NoVoiceWarnings) for f in voice_logger.filters):
        voice_logger.addFilter(_NoVoiceWarnings())
    metrics = active_metrics()
    bot_class: type[CarrierDiscordBot] = CarrierDiscordBot
    extra: dict[str, Any] = {}
    if metrics is not None:  # the same bot, counting reconnects, send retries and queued turns
        from carrier_cli.metrics.discord import MeteredDiscordBot

        bot_class, extra = MeteredDiscordBot, {"metrics": metrics}
    if options.shards is not None:
        from carrier_cli.clients.discord.sharded import sharded

        bot_class = sharded(bot_class)
    bot = bot_class(runtime, options, on_status=on_status, **extra)
    if gateway is not None:
        bot.max_concurrency = gateway.max_concurrency  # type: ignore[attr-defined]
    connection = asyncio.create_task(bot.start(token), name=f"discord:{character.name}")
    stopping = asyncio.create_task(stop_event.wait())
    try:
        await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connection.done():
            exc = connection.exception()
            if exc is None:
                raise RuntimeFailure(
                    f"The Discord connection of character {character.name!r} ended unexpectedly.",
                    hint="Run with --debug for discord.py's log.",
                )
            explained = _explain(exc, character.name)
            if explained is not None:
                raise explained from exc
            raise exc
        log.info("Discord: stopping %s", character.name)
        await bot.drain(options.shutdown_grace)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(connection, timeout=5)
    finally:
        _TOKENS_IN_USE.pop(token, None)
        stopping.cancel()
        if not bot.is_closed():
            with contextlib.suppress(Exception):
                await bot.close()
        if not connection.done():
            connection.cancel()
            with contextlib.suppress(BaseException):
                await connection
