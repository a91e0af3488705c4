"""The character's part of a prompt, prepared once per runtime and sampled per turn.

ElizaOS re-reads and re-formats the whole character every turn; here everything static
(directions, formatted example conversations, the system prompt) is rendered once, and a
turn only draws its random sample (3 bio lines, 10 lore lines, 5 examples, 5 topics, one
adjective) - a few microseconds instead of a re-render.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carrier_cli.character.model import Character

# Names that replace {{user1}}, {{user2}}... in example conversations (as ElizaOS does),
# so the model does not learn that users are literally called "user1".
_EXAMPLE_NAMES = [
    "Alex",
    "Sam",
    "Jordan",
    "Riley",
    "Casey",
    "Morgan",
    "Taylor",
    "Jamie",
    "Avery",
    "Quinn",
    "Robin",
    "Charlie",
    "Drew",
    "Kai",
    "Noor",
    "Mika",
    "Ines",
    "Tomás",
    "Yuki",
    "Priya",
]
_USER_SLOT = re.compile(r"\{\{\s*(user\d+|name\d+)\s*\}\}")

BIO_SAMPLE = 3
LORE_SAMPLE = 10
EXAMPLE_SAMPLE = 5
POST_SAMPLE = 10
TOPIC_SAMPLE = 5


def _sample(items: Sequence[str], n: int, rng: random.Random) -> list[str]:
    return list(items) if len(items) <= n else rng.sample(list(items), n)


def _join_names(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


class CharacterState:
    """Static and sampled prompt values of one character."""

    def __init__(self, character: Character, *, rng: random.Random | None = None) -> None:
        self.character = character
        self.rng = rng or random.Random()
        name = character.name
        self.name = name
        style = character.style
        self.system = character.system or (
            f"You are {name}, a character in a conversation. Stay in character, write "
            f"naturally and never mention that you are an AI model unless {name} would."
        )
        self.message_directions = self._directions([*style.all, *style.chat])
        self.post_directions = self._directions([*style.all, *style.post])
        self._examples = [self._format_example(convo) for convo in character.message_examples]
        self._posts = [p for p in character.post_examples if p.strip()]

    def _directions(self, lines: list[str]) -> str:
        lines = [ln.strip() for ln in lines if ln.strip()]
        if not lines:
            return ""
        return f"# Style for {self.name}\n" + "\n".join(f"- {ln}" for ln in lines)

    @staticmethod
    def _format_example(convo: Sequence[Any]) -> str:
        out = []
        for line in convo:
            actions = [a for a in getattr(line, "actions", []) if a]
            suffix = f" ({', '.join(actions)})" if actions else ""
            out.append(f"{line.name}: {line.text}{suffix}")
        return "\n".join(out)

    def _fill_names(self, text: str) -> str:
        names: dict[str, str] = {}
        pool = list(_EXAMPLE_NAMES)
        self.rng.shuffle(pool)

        def pick(match: re.Match[str]) -> str:
            slot = match.group(1)
            if slot not in names:
                names[slot] = pool[len(names) % len(pool)]
            return names[slot]

        return _USER_SLOT.sub(pick, text)

    def message_examples(self, n: int = EXAMPLE_SAMPLE) -> str:
        if not self._examples:
            return ""
        chosen = _sample(self._examples, n, self.rng)
        body = "\n\n".join(self._fill_names(c) for c in chosen)
        return f"# Example conversations for {self.name}\n{body}"

    def post_examples(self, n: int = POST_SAMPLE) -> str:
        if not self._posts:
            return ""
        chosen = _sample(self._posts, n, self.rng)
        return f"# Example posts by {self.name}\n" + "\n".join(f"- {p}" for p in chosen)

    def values(self, *, for_post: bool = False) -> dict[str, str]:
        """One turn's character values (sampled fresh, so replies do not all sound alike)."""
        c = self.character
        rng = self.rng
        bio = " ".join(_sample(c.bio, BIO_SAMPLE, rng))
        lore = "\n".join(_sample(c.lore, LORE_SAMPLE, rng))
        topics = _sample(c.topics, TOPIC_SAMPLE, rng)
        topic = rng.choice(c.topics) if c.topics else ""
        adjective = rng.choice(c.adjectives) if c.adjectives else ""
        values = {
            "agentName": self.name,
            "name": self.name,
            "username": c.username or self.name,
            "system": self.system,
            "bio": bio,
            "lore": lore,
            "topics": f"{self.name} is interested in {_join_names(topics)}." if topics else "",
            "topic": topic,
            "adjective": adjective,
            "traits": f"{self.name} is {adjective}." if adjective else "",
            "messageDirections": self.message_directions,
            "postDirections": self.post_directions,
            "characterPostExamples": self.post_examples(),
        }
        if not for_post:
            values["characterMessageExamples"] = self.message_examples()
        return values
