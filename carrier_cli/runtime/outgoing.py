"""Files and embeds a turn answers with, besides its text (platform-neutral).

A plugin answers with a file or an embed in one of two ways:

- its action's handler returns `ActionOutput(text=..., files=[...], embeds=[...])`
  instead of a string (or calls `ctx.send_file(...)` / `ctx.add_embed(...)`);
- its provider offers a file for the turn with `ctx.offer_file(...)`: the reply prompt
  lists it under "Files you can send" and the built-in SEND_FILE action is offered to
  the model, which sends the offered files with its reply when it chooses SEND_FILE.

They reach the client in `TurnResult.files` / `TurnResult.embeds`. Discord sends them
(discord.File, discord.Embed) after the reply's text; the terminal prints the file names
and each embed as text; the HTTP API (POST /v1/agents/{agent}/messages, its SSE `reply`
event, the WebSocket's `reply.completed`) answers with each embed as JSON (`embed_json`)
and each file as a descriptor (`describe_file`: id, filename, content_type, size,
description) plus a URL to download its bytes, which it keeps for a while in a bounded
on-disk store (clients/api/file_store.py); `carrier chat --json` prints the same
descriptors. Memory keeps their descriptions, never the bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
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

    @cached_property
    def file_id(self) -> str:
        """The file's content address: sha256 over its name, type and bytes (hex), so the
        process that ran the turn and the one that stores the bytes name it alike. Cached:
        hashing 10 MiB takes ~20 ms and a turn's file is named several times."""
        digest = hashlib.sha256()
        for part in (self.filename, self.content_type or ""):
            digest.update(part.encode("utf-8") + b"\0")
        digest.update(self.data)
        return digest.hexdigest()

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


def describe_file(file: OutgoingFile) -> dict[str, Any]:
    """A file for a JSON client: everything but the bytes (the API adds a `url`)."""
    return {
        "id": file.file_id,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": len(file.data),
        "description": file.description,
    }


def embed_json(embed: Embed) -> dict[str, Any]:
    """Every field of an embed, as JSON (`record()` is memory's shorter copy)."""
    return {
        "title": embed.title,
        "description": embed.description,
        "url": embed.url,
        "color": embed.color,
        "fields": [{"name": f.name, "value": f.value, "inline": f.inline} for f in embed.fields],
        "footer": embed.footer,
        "image_url": embed.image_url,
    }


def embed_from_json(data: dict[str, Any]) -> Embed:
    """The inverse of `embed_json` (the turn queue carries embeds as JSON)."""
    return Embed(
        title=data.get("title"),
        description=data.get("description"),
        url=data.get("url"),
        color=data.get("color"),
        fields=tuple(
            EmbedField(str(f["name"]), str(f["value"]), bool(f.get("inline")))
            for f in data.get("fields") or ()
        ),
        footer=data.get("footer"),
        image_url=data.get("image_url"),
    )
