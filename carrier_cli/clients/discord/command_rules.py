"""The rules and texts of the slash commands, apart from discord.py's plumbing (commands.py):
who may run /memory, where /ask is answered, what an /ask is as the runtime's message,
and what a stale command or button is told."""

from __future__ import annotations

from typing import Any

import discord

from carrier_cli.runtime.types import Addressing, IncomingMessage

COMMAND_NAMES = ("ask", "forget", "about", "memory")


def stale_command_text(name: str, character: str) -> str:
    listed = ", ".join(f"/{n}" for n in COMMAND_NAMES)
    if name in COMMAND_NAMES:  # the name is right, its options are not the bot's
        problem = (
            f"Discord sent an older version of /{name} than {character} has (its options changed)."
        )
    else:
        problem = (
            f"/{name} is not a command of {character} (any more): Discord still shows a "
            f"command the bot no longer has. Its commands are {listed}."
        )
    return (
        f"{problem} Reloading Discord (Ctrl+R) shows the current commands; if they still "
        "look wrong, the bot's operator can re-sync them (`carrier run --sync-commands`)."
    )


def refusal_here(interaction: discord.Interaction[Any], options: Any) -> str | None:
    """Why /ask is not answered where it was run, by the character's channel rules (the
    ones messages follow), or None. `channels` modes: off and listen never answer."""
    if interaction.guild_id is None:
        if getattr(options, "ignore_dms", False):
            return "This bot does not answer in direct messages."
        return None
    channel: Any = interaction.channel
    channel_id = str(interaction.channel_id)
    parent = getattr(channel, "parent_id", None)
    allowed = list(getattr(options, "allowed_channel_ids", []) or [])
    if allowed and channel_id not in allowed and (parent is None or str(parent) not in allowed):
        return "This bot does not answer in this channel."
    modes: dict[str, Any] = dict(getattr(options, "channels", {}) or {})
    setting = modes.get(channel_id) or modes.get(getattr(channel, "name", None) or "")
    if setting is None and parent is not None:
        setting = modes.get(str(parent))
    if getattr(setting, "mode", None) in ("off", "listen"):
        return "This bot does not answer in this channel."
    return None


STALE_BUTTON = (
    "This button has expired (the bot restarted or it waited too long): nothing was done. "
    "Run the command again."
)


def may_search_memory(interaction: discord.Interaction[Any], roles: list[str]) -> tuple[bool, str]:
    """(allowed, why not). Manage Server or Administrator in the guild, or a role whose
    name (case-insensitive) or id is listed in `clients.discord.memory_roles`."""
    if interaction.guild_id is None:
        return False, "/memory works only in a server, for members allowed to use it."
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True, ""
    wanted = {r.strip().lower() for r in roles if r.strip()}
    user = interaction.user
    member_roles = getattr(user, "roles", [])
    if wanted and any(r.name.lower() in wanted or str(r.id) in wanted for r in member_roles):
        return True, ""
    listed = f" or one of the roles {', '.join(sorted(roles))}" if roles else ""
    return False, f"/memory needs the Manage Server permission{listed}."


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def ask_message(interaction: discord.Interaction[Any], text: str) -> IncomingMessage:
    """An /ask as the runtime's message: addressed to the agent (a DM: one-to-one)."""
    user = interaction.user
    channel: Any = interaction.channel
    guild = interaction.guild
    dm = interaction.guild_id is None
    if dm:
        room_name = f"DM with {user.display_name}"
    else:
        channel_name = getattr(channel, "name", None) or interaction.channel_id
        room_name = f"{guild.name if guild and guild.name else 'server'} #{channel_name}"
    return IncomingMessage(
        text=text,
        source="discord",
        room_key=str(interaction.channel_id),
        sender_key=str(user.id),
        sender_name=user.display_name,
        message_key=str(interaction.id),  # a snowflake like a message id: one memory per /ask
        room_name=room_name,
        is_direct=dm,
        mentions_agent=True,
        sender_is_bot=user.bot,
        addressed=Addressing.DIRECT if dm else Addressing.MENTION,
        metadata={
            "discord": {
                "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
                "channel_id": str(interaction.channel_id),
                "interaction_id": str(interaction.id),
                "command": "ask",
                "author_username": user.name,
            },
            "sender_names": sorted({user.display_name, user.name}),
        },
    )
