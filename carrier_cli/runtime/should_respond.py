"""Should the agent answer this message? Rules first, the small model only when they can't tell.

The client says how the agent was addressed and what its rules ask for (the fields of
`IncomingMessage` documented in runtime/types.py); this module turns that verdict into a
decision, with no knowledge of any platform. Order matters and is deliberate: what the
client's rules ignore (another bot, by default on Discord: two bots mentioning each other
would otherwise talk forever) is filtered before anything else, then direct conversations,
then mentions, replies and name matches, then the client's mentions-only rule, then the model.

The character's name is matched here, once, for the runtime and for clients alike
(`names_pattern`): the Discord client uses the same pattern for its "named" verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from carrier_cli.runtime.types import Addressing, Decision, IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.character.model import Character

_ADDRESSED = frozenset({Addressing.MENTION, Addressing.REPLY, Addressing.NAME})


def names_pattern(names: Iterable[str | None]) -> re.Pattern[str]:
    """Matches any of `names` as a whole word, case-insensitively, with or without a leading
    @ ("hey Eliza,", "@eliza_bot"), but not inside a word or an address ("Elizabeth",
    "x@eliza"). Longer names are tried first so "Eliza Bot" wins over "Eliza"."""
    cleaned = {n.strip().lstrip("@") for n in names if n}
    return _compile(tuple(sorted((n for n in cleaned if n), key=lambda n: (-len(n), n))))


@lru_cache(maxsize=64)
def _compile(names: tuple[str, ...]) -> re.Pattern[str]:
    if not names:
        return re.compile(r"(?!)")  # no name: never matches
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w@])@?(?:{alternatives})(?!\w)", re.I)


def name_pattern(character: Character) -> re.Pattern[str]:
    """Matches the character's name or username as a whole word, case-insensitively."""
    return names_pattern([character.name, character.username])


def addressing(message: IncomingMessage, names: re.Pattern[str]) -> Addressing:
    """The client's verdict, or the runtime's own reading for a message without one."""
    if message.addressed is not None:
        return message.addressed
    if message.is_direct:
        return Addressing.DIRECT
    if message.mentions_agent:
        return Addressing.MENTION
    if names.search(message.text):
        return Addressing.NAME
    return Addressing.NONE


def rule_decision(message: IncomingMessage, names: re.Pattern[str]) -> Decision | None:
    """The decision the rules make, or None when the small model has to decide."""
    if message.ignore:
        return "IGNORE"
    how = addressing(message, names)
    if how is Addressing.DIRECT:
        return "DIRECT"
    if how in _ADDRESSED:
        return "MENTIONED"
    if message.respond_only_when_addressed:
        return "IGNORE"
    return None
