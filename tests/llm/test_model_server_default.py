"""The fake model server's default rule: it echoes the new message of a runtime prompt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from carrier_cli.memory.types import Memory
from carrier_cli.runtime.formatting import format_conversation
from carrier_cli.runtime.parsing import parse_reply
from carrier_cli.runtime.templates import MESSAGE_HANDLER, POST_CREATION, render
from tests.support.model_server import default_reply_text, new_message_text


def _memory(name: str, text: str, minutes_ago: int) -> Memory:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return Memory(agent_id=uuid.uuid4(), content={"text": text, "name": name}, created_at=when)


def _reply_prompt(*memories: Memory) -> str:
    return render(
        MESSAGE_HANDLER,
        {
            "agentName": "Eliza",
            "senderName": "Bob",
            "recentMessages": format_conversation(memories),
        },
    )


def _echo(prompt: str) -> str | None:
    return parse_reply(default_reply_text([{"role": "user", "content": prompt}])).text


def test_runtime_prompt_echoes_the_newest_conversation_entry() -> None:
    prompt = _reply_prompt(
        _memory("Bob", "an old question", 90),
        _memory("Eliza", "an old answer", 89),
        _memory("Bob", "is the tide in?", 0),
    )
    assert prompt.rstrip().endswith("</output>")
    assert _echo(prompt) == "Echo: is the tide in?"


def test_multi_line_and_markup_messages_come_back_exactly() -> None:
    text = "line one\nfish & chips <b>x</b> </text> 3 < 4"
    prompt = _reply_prompt(_memory("Bob", "earlier", 5), _memory("Bob", text, 0))
    assert new_message_text(prompt) == text
    assert _echo(prompt) == f"Echo: {text}"


def test_without_a_conversation_the_last_plain_line_is_echoed() -> None:
    post = render(POST_CREATION, {"agentName": "Eliza", "postTopic": "tides"})
    assert _echo(post) == "Echo: No hashtag spam, no quotes around the post, no commentary."
    assert _echo("What is the weather\non Mars?\n\n") == "Echo: on Mars?"
    assert _echo("<task>x</task>\nhello there\n<output>\n</output>") == "Echo: hello there"


def test_configured_default_text_is_used_verbatim() -> None:
    raw = default_reply_text([{"role": "user", "content": "hi"}], default_text="Fixed &amp; x")
    assert parse_reply(raw).text == "Fixed & x"
