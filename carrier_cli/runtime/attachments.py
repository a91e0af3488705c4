"""Attachments in a turn: what a client hands in, what the model is shown, what memory keeps.

`IncomingMessage.attachments` is a list of plain dicts (JSON-shaped, so the HTTP API's URL
references fit as they are). A client that read the files (Discord) fills more keys:

    filename, content_type, size, url    as the platform gives them
    kind      "image" | "text" | "file"
    width, height                        an image's size in pixels (Pillow read it)
    data      the image bytes prepared for the model (bytes; never stored)
    mime      their media type (png, jpeg, gif or webp)
    text      a text attachment's text (in the turn's prompt; never stored in the message)
    note      why it was not read, e.g. "larger than the 10 MB limit"

Memory keeps `stored()` of them: the metadata the description ("[image: cat.png,
64x48]", `describe`) is made from, never the bytes or the file's text, so a stored
conversation costs what its text costs. A model that accepts images (`llm.vision`) gets
the images as image content; any other model gets the description and is told it cannot
see them, so its reply does not pretend to have looked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from carrier_cli.llm.base import IMAGE_TYPES, ImagePart
from carrier_cli.text import clip

if TYPE_CHECKING:
    from carrier_cli.runtime.turn.state import TurnDeps

# Never stored with the message: the bytes, and a file's whole text.
_TRANSIENT = ("data", "text")
# A file's text in the prompt: 6,000 characters each (about 1,500 tokens), 15,000 in all,
# so three attached pages never push the conversation out of an 8k-token window.
TEXT_CHARS_EACH = 6_000
TEXT_CHARS_TOTAL = 15_000
# Images sent with one prompt, whatever the client passed (Discord's own bound is
# `max_images`, at most 10): each costs up to about 1,600 input tokens.
MAX_IMAGES = 10

Attachment = Mapping[str, Any]


def describe(attachment: Attachment) -> str:
    """`[image: cat.png, 64x48]`, `[file: notes.pdf]`, `[image: big.png, not read: ...]`."""
    kind = attachment.get("kind") or _guess_kind(attachment)
    label = "image" if kind == "image" else "file"
    name = attachment.get("filename") or attachment.get("name") or attachment.get("url")
    parts = [str(name or "attachment")]
    width, height = attachment.get("width"), attachment.get("height")
    if kind == "image" and width and height:
        parts.append(f"{width}x{height}")
    note = attachment.get("note")
    if note:
        parts.append(f"not read: {note}")
    return f"[{label}: {', '.join(parts)}]"


def stored(attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    """What memory keeps of each attachment: everything but the bytes and the text (its
    name, type, size and pixel size, enough for `describe` in later turns' conversation).
    Nothing is added: the HTTP API lists a message's attachments as they were sent."""
    return [{k: v for k, v in a.items() if k not in _TRANSIENT} for a in attachments]


def image_parts(attachments: Sequence[Attachment]) -> tuple[ImagePart, ...]:
    """The images a client read, as the model layer sends them."""
    parts = []
    for attachment in attachments:
        data, mime = attachment.get("data"), attachment.get("mime")
        if isinstance(data, bytes) and data and mime in IMAGE_TYPES:
            parts.append(ImagePart(data, str(mime), str(attachment.get("filename") or "")))
    return tuple(parts[:MAX_IMAGES])


def model_sees_images(deps: TurnDeps, model: str | None = None) -> bool:
    """Whether the turn's model (default: the large one) accepts images, the character's
    `model.vision` deciding over the name table."""
    from carrier_cli.llm.vision import accepts_images

    override = getattr(getattr(deps.character, "model", None), "vision", None)
    return accepts_images(model or deps.model_config.large, override)


def prompt_section(attachments: Sequence[Attachment], sender: str, *, sees_images: bool) -> str:
    """What the reply prompt says about the new message's attachments ("" for none)."""
    if not attachments:
        return ""
    lines = ["# Attachments of the new message"]
    images = [a for a in attachments if (a.get("kind") or _guess_kind(a)) == "image"]
    readable = [a for a in images if isinstance(a.get("data"), bytes) and a.get("data")]
    unread = [a for a in images if a not in readable]
    if readable and sees_images:
        names = ", ".join(describe(a) for a in readable)
        lines.append(
            f"{sender} attached {_count(len(readable), 'image')}, included with this prompt "
            f"in that order: {names}. Look at them to answer."
        )
    elif readable or unread:
        names = ", ".join(describe(a) for a in images)
        lines.append(
            f"{sender} attached {_count(len(images), 'image')} that you cannot see: {names}. "
            "You know only the file name and size. Do not describe the image or pretend to "
            "have seen it; if it matters, say you cannot see images here and ask what it shows."
        )
    if unread and sees_images:
        lines.append("Not shown: " + ", ".join(describe(a) for a in unread) + ".")
    budget = TEXT_CHARS_TOTAL
    for attachment in attachments:
        if (attachment.get("kind") or _guess_kind(attachment)) == "image":
            continue
        text = attachment.get("text")
        if isinstance(text, str) and text.strip() and budget > 0:
            shown = clip(text.strip(), min(TEXT_CHARS_EACH, budget), rstrip=True)
            budget -= len(shown)
            cut = " (cut short)" if len(shown) < len(text.strip()) else ""
            lines.append(f"## {attachment.get('filename') or 'file'}{cut}\n{shown}")
        else:
            lines.append(f"{describe(attachment)}: its content was not read.")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"an {noun}" if n == 1 else f"{n} {noun}s"


def _guess_kind(attachment: Attachment) -> str:
    content_type = str(attachment.get("content_type") or "")
    if content_type.startswith("image/"):
        return "image"
    name = str(attachment.get("filename") or "").lower()
    if name.endswith((".png", ".jpg", ".jpeg", ".gif", ".webp")):
        return "image"
    return "file"
