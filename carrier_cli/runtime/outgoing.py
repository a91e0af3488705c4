"""Files and embeds a turn answers with, besides its text (platform-neutral).

A plugin answers with a file or an embed in one of two ways:

- its action's handler returns `ActionOutput(text=..., files=[...], embeds=[...])`
  instead of a string (or calls `ctx.send_file(...)` / `ctx.add_embed(...)`);
- its provider offers a file for the turn with `ctx.offer_file(...)`: the reply prompt
  lists it under "Files you can send" and the built-in SEND_FILE action is offered to
  the model, which sends the offered files with its reply when it chooses SEND_FILE.

They reach the client in `TurnResult.files` / `TurnResult.embeds`. Discord sends them
(discord.File, discord.Embed) after the reply's text; clients without files degrade:
the terminal prints the file names and each embed as text, the HTTP API lists the files'
names, types and sizes. Memory keeps their descriptions, never the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_FILES = 10  # per turn: Discord takes at most 10 files (and 10 embeds) per message
MAX_FILE_BYTES = 10 * 1024 * 1024  # Discord's upload limit without server boosts
MAX_EMBEDS = 10


@dataclass(frozen=True)
class OutgoingFile:
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None
    description: str | None = None  # alt text (Discord shows it; screen readers read it)

    def __repr__(self) -> str:
        return f"OutgoingFile({self.filename!r}, {len(self.data)} bytes)"

    def describe(self) -> str:
        return f"[file: {self.filename}, {len(self.data):,} bytes]"

    def record(self) -> dict[str, Any]:
        """What memory keeps of it (the conversation shows the description)."""
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": len(self.data),
            "kind": "file",
        }


@dataclass(frozen=True)
class EmbedField:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class Embed:
    """A structured reply: a card with a title, text, fields and an image (by URL)."""

    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = None  # 0xRRGGBB
    fields: tuple[EmbedField, ...] = ()
    footer: str | None = None
    image_url: str | None = None

    def as_text(self) -> str:
        """The embed for a client that shows only text."""
        lines = [f"**{self.title}**" if self.title else "", self.description or ""]
        lines.extend(f"{f.name}: {f.value}" for f in self.fields)
        lines.extend([self.url or "", self.footer or ""])
        return "\n".join(line for line in lines if line)

    def record(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "url": self.url,
            "fields": [{"name": f.name, "value": f.value, "inline": f.inline} for f in self.fields],
        }


@dataclass
class ActionOutput:
    """What an action's handler may return instead of a string."""

    text: str | None = None
    files: list[OutgoingFile] = field(default_factory=list)
    embeds: list[Embed] = field(default_factory=list)


def as_text_lines(files: list[OutgoingFile], embeds: list[Embed]) -> list[str]:
    """A turn's files and embeds for a client that shows only text (the terminal)."""
    return [f"(sent {f.describe()[1:-1]})" for f in files] + [e.as_text() for e in embeds]
