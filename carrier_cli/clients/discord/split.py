"""Splitting a reply into Discord messages (at most 2000 characters each).

Discord rejects longer messages, and a cut in the middle of a code block turns the rest of
the reply into a mess of unformatted code. So cuts go, in order of preference, at a
paragraph break, a line break, the end of a sentence or a space, always outside code blocks;
only a code block that cannot fit in one message is cut inside, and then the fence is closed
at the end of the chunk and reopened (with its language) at the start of the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000
_CLOSE = "\n```"
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*_]*(?=\s)")
_MAX_FENCE = 40  # a longer opening fence line is reopened as a bare ```


@dataclass(frozen=True)
class _Block:
    start: int  # offset of the opening fence line
    body: int  # offset just after the opening fence line's newline
    end: int  # offset just after the closing fence (len(text) if unterminated)
    fence: str  # the opening fence line, e.g. "```python"


def _code_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    offset = 0
    open_start: int | None = None
    open_body = 0
    fence = ""
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if open_start is None:
            # "```x```" on one line is inline code, not a fence.
            if stripped.startswith("```") and "```" not in stripped[3:]:
                open_start, open_body, fence = offset, offset + len(line), stripped
        elif stripped.startswith("```"):
            end = offset + len(line.rstrip("\r\n"))
            blocks.append(_Block(open_start, open_body, end, fence))
            open_start = None
        offset += len(line)
    if open_start is not None:
        blocks.append(_Block(open_start, open_body, len(text), fence))
    return blocks


def _inside(blocks: list[_Block], pos: int) -> _Block | None:
    for block in blocks:
        if block.start < pos < block.end:
            return block
    return None


def _outside_cut(text: str, blocks: list[_Block], limit: int) -> tuple[int, int] | None:
    """(end of this chunk, start of the next) at the best boundary outside code, or None."""
    window = text[: limit + 1]
    min_fill = limit // 3
    found: list[tuple[int, int]] = []
    patterns: list[tuple[re.Pattern[str], bool]] = [
        (re.compile(r"\n[ \t]*\n"), False),  # paragraph: cut before the blank line
        (re.compile(r"\n"), False),  # line
        (_SENTENCE_END, True),  # sentence: keep the punctuation
        (re.compile(r"[ \t]+"), False),  # word
    ]
    for pattern, keep in patterns:
        best: tuple[int, int] | None = None
        for match in pattern.finditer(window):
            cut = match.end() if keep else match.start()
            if cut <= 0 or cut > limit or _inside(blocks, cut) or _inside(blocks, match.end()):
                continue
            best = (cut, match.end())
        if best is not None:
            if best[0] >= min_fill:
                return best
            found.append(best)
    return found[0] if found else None


def _inside_cut(text: str, block: _Block, limit: int) -> tuple[str, str]:
    """Cut inside `block` (which starts before `limit`): close the fence, reopen it after."""
    fence = block.fence if len(block.fence) <= _MAX_FENCE else "```"
    room = limit - len(_CLOSE)
    window = text[: room + 1]
    cut = window.rfind("\n", block.body, room + 1)
    rest_start = cut + 1
    if cut <= block.body:
        space = max(window.rfind(" ", block.body, room + 1), window.rfind("\t", block.body, room))
        cut, rest_start = (space, space + 1) if space > block.body else (room, room)
    if cut <= block.body:  # the fence line itself fills the message: no code fits after it
        cut = rest_start = room
        return text[:cut], text[rest_start:]
    return text[:cut] + _CLOSE, fence + "\n" + text[rest_start:]


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Chunks of at most `limit` characters, none empty; a short text is one chunk."""
    if limit < 20:
        raise ValueError("limit must leave room for code fences (at least 20)")
    chunks: list[str] = []
    rest = text.strip("\n").rstrip()
    while rest:
        if len(rest) <= limit:
            chunks.append(rest)
            break
        blocks = _code_blocks(rest)
        cut = _outside_cut(rest, blocks, limit)
        if cut is not None:
            chunk, rest = rest[: cut[0]].rstrip(), rest[cut[1] :].lstrip("\r\n")
            if not _inside(blocks, cut[1]):
                rest = rest.lstrip()
        else:
            block = next((b for b in blocks if b.start < limit < b.end or b.start == 0), None)
            if block is None:  # one long word: cut it where it must be cut
                chunk, rest = rest[:limit], rest[limit:]
            else:
                chunk, rest = _inside_cut(rest, block, limit)
                chunk = chunk.rstrip()
        if chunk.strip():
            chunks.append(chunk)
    return chunks
