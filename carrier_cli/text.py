"""Cutting text to fit a line: one helper for every place that shows a preview.

Memories in `carrier memory list`, a character's bio in `character show`, a reply in the
Discord log, the prompt log in `/debug`: each showed a preview cut to N characters with an
ellipsis, and each had written the same one-liner again. This module is the lowest layer
(standard library only, no Carrier imports), so the runtime, the clients and the CLI can
all use it.
"""

from __future__ import annotations

ELLIPSIS = "…"


def clip(text: str, width: int, *, ellipsis: str = ELLIPSIS, rstrip: bool = False) -> str:
    """`text` itself when it fits in `width` characters, else its start and `ellipsis`,
    `width` characters in all. `rstrip` drops the whitespace the cut leaves before the
    ellipsis ("a word …" reads as "a word…")."""
    if len(text) <= width:
        return text
    kept = text[: width - len(ellipsis)]
    return (kept.rstrip() if rstrip else kept) + ellipsis


def one_line(text: str, width: int) -> str:
    """`text` with every run of whitespace (newlines included) made one space, then
    clipped to `width`: a multi-line memory or reply as a single row of a table or log."""
    return clip(" ".join(text.split()), width)
