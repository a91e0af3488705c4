"""Caption rules Instagram enforces server-side, checked before anything is uploaded."""

from __future__ import annotations

import re

from carrier_cli.errors import InputError

MAX_CAPTION_CHARS = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20

_HASHTAG = re.compile(r"(?<![\w#])#\w+")
_MENTION = re.compile(r"(?<![\w@])@[\w.]+")


def hashtags(text: str) -> list[str]:
    return _HASHTAG.findall(text)


def mentions(text: str) -> list[str]:
    return _MENTION.findall(text)


def caption_problems(text: str) -> list[str]:
    """Every rule the caption breaks, each with the measured value (empty when it is fine)."""
    problems = []
    if len(text) > MAX_CAPTION_CHARS:
        problems.append(
            f"caption has {len(text)} characters; Instagram allows at most {MAX_CAPTION_CHARS}"
        )
    tags = hashtags(text)
    if len(tags) > MAX_HASHTAGS:
        problems.append(
            f"caption has {len(tags)} hashtags; Instagram allows at most {MAX_HASHTAGS}"
        )
    ats = mentions(text)
    if len(ats) > MAX_MENTIONS:
        problems.append(
            f"caption has {len(ats)} @mentions; Instagram allows at most {MAX_MENTIONS}"
        )
    return problems


def check_caption(text: str, *, source: str = "--caption") -> str:
    """Return the caption unchanged, or refuse it with every broken rule named."""
    problems = caption_problems(text)
    if problems:
        raise InputError(
            f"{source}: " + "; ".join(problems) + ".",
            hint="Shorten the caption or remove hashtags/mentions, then run the command again.",
        )
    return text


def append_hashtags(caption: str, tags: list[str]) -> str:
    """Add configured hashtags that the caption does not already carry, within the limits."""
    present = {t.lower() for t in hashtags(caption)}
    extra: list[str] = []
    for tag in tags:
        tag = tag if tag.startswith("#") else f"#{tag}"
        if tag.lower() not in present and len(present) + len(extra) < MAX_HASHTAGS:
            extra.append(tag)
    if not extra:
        return caption
    combined = f"{caption.rstrip()}\n\n{' '.join(extra)}"
    return combined if len(combined) <= MAX_CAPTION_CHARS else caption
