"""Answering Discord interactions (slash commands, buttons) so that nothing fails silently.

An interaction has two clocks: Discord waits 3 s for the first answer (a message or a
"thinking…" defer) and accepts follow-ups on the interaction token for 15 minutes. Past
the first, the callback answers 404 code 10062 (Unknown interaction); past the second,
follow-ups answer 401 code 50027 (Invalid Webhook Token). Neither leaves a way to tell the
user, so both are logged with the command and the guild. Everything else (a missing
permission, a failing turn) still has a live token: the user gets an ephemeral error.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger("carrier_cli.discord")

UNKNOWN_INTERACTION = 10062  # the 3 s to answer passed, or Discord lost the interaction
INVALID_WEBHOOK_TOKEN = 50027  # the 15 minutes of the token passed
UNKNOWN_WEBHOOK = 10015
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013


def where(interaction: discord.Interaction[Any]) -> str:
    """'/ask in guild 123 (Guild name) channel 456 by alice (789)', for logs."""
    command = interaction.command
    data: Any = interaction.data or {}
    if command is not None:
        what = f"/{command.qualified_name}"
    elif interaction.type is discord.InteractionType.component:
        what = f"button {data.get('custom_id', '?')}"
    else:
        what = f"/{data.get('name', '?')}"
    guild = interaction.guild
    place = (
        f"guild {interaction.guild_id}" + (f" ({guild.name})" if guild and guild.name else "")
        if interaction.guild_id
        else "a DM"
    )
    user = interaction.user
    who = f"{user.name} ({user.id})" if user is not None else "?"
    return f"{what} in {place} channel {interaction.channel_id} by {who}"


def token_dead(exc: BaseException) -> str | None:
    """Why the interaction can no longer be answered at all, or None if it can."""
    if isinstance(exc, discord.NotFound) and exc.code in (UNKNOWN_INTERACTION, UNKNOWN_WEBHOOK):
        return (
            "the interaction expired before it was answered (Discord allows 3 s for the first "
            f"answer; 404 code {exc.code}): the machine may be overloaded or the event loop blocked"
        )
    if isinstance(exc, discord.HTTPException) and exc.code == INVALID_WEBHOOK_TOKEN:
        return (
            "the interaction token expired (follow-ups are accepted for 15 minutes; 401 code "
            f"{exc.code}): the answer took too long"
        )
    return None


def failure_reason(exc: BaseException) -> str:
    """One line for the log: what went wrong talking to Discord (or in the command)."""
    dead = token_dead(exc)
    if dead is not None:
        return dead
    if isinstance(exc, discord.Forbidden):
        return (
            f"Discord refused it for missing permissions (403 code {exc.code}: {exc.text}); "
            "check the bot's role and the channel's permission overwrites"
        )
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered {exc.status} (code {exc.code}): {exc.text}"
    return f"{type(exc).__name__}: {exc}"


async def tell(interaction: discord.Interaction[Any], text: str) -> bool:
    """Say `text` to the user only (ephemeral): as the first answer if there was none yet,
    as a follow-up otherwise. False (logged) when Discord no longer takes it."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
        return True
    except discord.HTTPException as exc:
        log.warning(
            "Discord: could not tell the user of %s: %s", where(interaction), failure_reason(exc)
        )
        return False


async def report_failure(
    interaction: discord.Interaction[Any], exc: BaseException, *, user_message: str
) -> None:
    """Log a failed command or button with its command and guild, and tell the user
    `user_message` ephemerally unless the token is dead (then there is no one to tell)."""
    dead = token_dead(exc)
    log.error(
        "Discord: %s failed: %s",
        where(interaction),
        failure_reason(exc),
        exc_info=log.isEnabledFor(logging.DEBUG) and dead is None,
    )
    if dead is None:
        await tell(interaction, user_message)
