"""Runtime fixtures: a real MemoryStore on SQLite and PostgreSQL, a character, and a runtime
built on a ScriptedChatModel (the model is the only thing replaced in pipeline tests)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.store import MemoryStore
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.runtime.plugins import Plugin
from carrier_cli.runtime.types import IncomingMessage


def reply_xml(text: str, actions: str = "REPLY", thought: str = "thinking") -> str:
    return (
        f"<response><thought>{thought}</thought><actions>{actions}</actions>"
        f"<text>{text}</text></response>"
    )


def is_reply_prompt(messages: list[Any]) -> bool:
    return "<actions>" in messages[-1].content and "Respond using this XML" in messages[-1].content


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'memory.db'}"


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[MemoryStore]:
    opened = await MemoryStore.open(sqlite_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def character() -> Character:
    return Character(
        name="Eliza",
        username="eliza_bot",
        bio=["Eliza is a thoughtful listener.", "Eliza grew up by the sea."],
        lore=["Eliza once sailed alone to the Azores."],
        adjectives=["curious"],
        topics=["sailing", "tea"],
        style={
            "all": ["Keep it short."],
            "chat": ["Ask one question back."],
            "post": ["No emojis."],
        },
        message_examples=[
            [{"name": "{{user1}}", "text": "Hi!"}, {"name": "Eliza", "text": "Hello, sailor."}]
        ],
        post_examples=["The sea keeps no secrets from those who listen."],
        knowledge=["Eliza's favourite tea is genmaicha."],
    )


Factory = Callable[..., Awaitable[AgentRuntime]]


@pytest.fixture
async def make_runtime(character: Character) -> AsyncIterator[Factory]:
    made: list[AgentRuntime] = []

    async def make(
        store: MemoryStore,
        replies: Any,
        *,
        character_: Character | None = None,
        plugins: list[Plugin] | None = None,
        **model_kwargs: Any,
    ) -> AgentRuntime:
        model = ScriptedChatModel(replies, **model_kwargs)
        runtime = await AgentRuntime.create(
            character_ or character,
            Settings(),
            store=store,
            model=model,
            model_name="large-1",
            plugins=plugins,
        )
        runtime.rng = random.Random(7)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.aclose()


def dm(
    text: str,
    key: str | None = None,
    *,
    room: str = "room-1",
    sender: str = "u1",
    name: str = "Bob",
    **kw: Any,
) -> IncomingMessage:
    return IncomingMessage(
        text=text,
        source=kw.pop("source", "terminal"),
        room_key=room,
        sender_key=sender,
        sender_name=name,
        message_key=key,
        is_direct=kw.pop("is_direct", True),
        **kw,
    )


def group(text: str, key: str | None = None, **kw: Any) -> IncomingMessage:
    kw.setdefault("source", "discord")
    return dm(text, key, is_direct=False, **kw)
