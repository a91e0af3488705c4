"""Should the agent answer this message? Rules first, the small model only when they can't tell.

Order matters and is deliberate: other bots are filtered before anything else (two bots
mentioning each other would otherwise talk forever), then direct conversations, then
mentions and name matches, then the character's client rules, then the model.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from carrier_cli.runtime.types import Decision, IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.character.model import Character


def name_pattern(character: Character) -> re.Pattern[str]:
    """Matches the character's name or username as a whole word, case-insensitively."""
    names = {character.name.strip()}
    if character.username:
        names.add(character.username.strip().lstrip("@"))
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True) if n)
    return re.compile(rf"(?<![\w@])@?(?:{alternatives})(?!\w)", re.I)


def rule_decision(
    message: IncomingMessage, character: Character, names: re.Pattern[str]
) -> Decision | None:
    """The decision the rules make, or None when the small model has to decide."""
    discord = character.clients.discord
    if message.sender_is_bot and message.source == "discord" and discord.ignore_bots:
        return "IGNORE"
    if message.is_direct or message.source == "terminal":  # the terminal is always 1:1
        return "DIRECT"
    if message.mentions_agent or names.search(message.text):
        return "MENTIONED"
    if message.source == "discord" and discord.respond_only_to_mentions:
        return "IGNORE"
    return None
