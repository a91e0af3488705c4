"""Turning memories into prompt text: conversations with relative times, fact lists, actions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

from carrier_cli.memory.types import Memory
from carrier_cli.runtime.attachments import describe
from carrier_cli.runtime.plugins import Action


def relative_time(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "just now"
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 7, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"  # pragma: no cover - unreachable


def format_message(memory: Memory, now: datetime) -> str:
    """`(2 minutes ago) Alice: hello (CONTINUE)`, as ElizaOS renders recent messages."""
    content = memory.content
    name = content.get("name") or "Unknown"
    actions = [a for a in content.get("actions") or [] if a not in ("REPLY", "NONE")]
    suffix = f" ({', '.join(actions)})" if actions else ""
    text = memory.text
    stored = content.get("attachments")
    if stored:  # what was attached, as memory keeps it: "[image: cat.png, 64x48]"
        described = [describe(a) if isinstance(a, dict) else "[attachment]" for a in stored]
        text = " ".join([t for t in (memory.text.strip(), *described) if t])
    return f"({relative_time(memory.created_at, now)}) {name}: {text}{suffix}"


def format_conversation(
    memories: Sequence[Memory], *, max_chars: int | None = None, now: datetime | None = None
) -> str:
    """Oldest first; when over `max_chars`, the oldest lines are dropped (newest matter most)."""
    now = now or datetime.now(UTC)
    lines = [format_message(m, now) for m in memories]
    if max_chars is not None:
        total = sum(len(ln) + 1 for ln in lines)
        start = 0
        while total > max_chars and start < len(lines) - 1:
            total -= len(lines[start]) + 1
            start += 1
        lines = lines[start:]
    return "\n".join(lines)


def format_list(title: str, items: Sequence[str]) -> str:
    items = [i.strip() for i in items if i and i.strip()]
    if not items:
        return ""
    return f"# {title}\n" + "\n".join(f"- {i}" for i in items)


def format_actions(actions: Sequence[Action]) -> str:
    if not actions:
        return ""
    lines = [f"- {a.name}: {a.description}" for a in actions]
    return "# Available actions\n" + "\n".join(lines)


def format_action_examples(
    actions: Sequence[Action], agent_name: str, rng: random.Random, limit: int = 5
) -> str:
    convos: list[str] = []
    for action in actions:
        for example in action.examples:
            lines = []
            for line in example:
                name = str(line.get("name", "")).replace("{{agentName}}", agent_name)
                text = str(line.get("text", ""))
                acts = line.get("actions") or []
                suffix = f" ({', '.join(str(a) for a in acts)})" if acts else ""
                lines.append(f"{name}: {text}{suffix}")
            convos.append("\n".join(lines))
    if not convos:
        return ""
    chosen = convos if len(convos) <= limit else rng.sample(convos, limit)
    body = "\n\n".join(chosen).replace("{{user1}}", "Alex").replace("{{user2}}", "Sam")
    return "# Action examples\n" + body
