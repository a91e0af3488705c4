"""Turning terminal lines into chat messages.

Multi-line messages are written one of three ways, all documented in /help:
a line ending in a backslash continues on the next line; a line that is just `\"\"\"`
opens a block closed by another `\"\"\"` line; and several lines pasted at once arrive
as one message. The assembly rules are pure functions over a line source so that the
same code serves the interactive prompt and the tests.
"""

from __future__ import annotations

from collections.abc import Callable

BLOCK_FENCE = '"""'

# Reads one more line with the given continuation prompt; raises EOFError at end of input.
ReadLine = Callable[[str], str]


def collect_message(first: str, read_line: ReadLine, continuation: str = "... ") -> str:
    """The whole message that starts with `first`, reading continuation lines as needed.

    An unterminated block or continuation at end of input keeps what was typed rather
    than losing it: Ctrl-D inside a block sends the block.
    """
    if first.strip() == BLOCK_FENCE:
        lines: list[str] = []
        while True:
            try:
                line = read_line(continuation)
            except EOFError:
                break
            if line.strip() == BLOCK_FENCE:
                break
            lines.append(line)
        return "\n".join(lines)
    lines = []
    line = first
    while line.endswith("\\") and not line.endswith("\\\\"):
        lines.append(line[:-1])
        try:
            line = read_line(continuation)
        except EOFError:
            line = ""
            break
    lines.append(line)
    return "\n".join(lines).strip("\n")


def split_command(text: str) -> tuple[str, str] | None:
    """(`name`, `argument`) for a slash command such as `/memory what I like`, else None.

    `//text` escapes a message that really starts with a slash.
    """
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//") or len(stripped) < 2:
        return None
    head, _, rest = stripped[1:].partition(" ")
    if not head or not head.replace("-", "").replace("_", "").isalnum():
        return None
    return head.lower(), rest.strip()


def unescape_message(text: str) -> str:
    """`//etc` sends `/etc` to the agent."""
    stripped = text.lstrip()
    return stripped[1:] if stripped.startswith("//") else text
