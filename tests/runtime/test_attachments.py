"""Attachments through a real turn: the runtime against the fake model server through the
real `openai` SDK, on both database backends (what memory keeps of an attachment)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from PIL import Image

from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.factory import ModelConfig
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import MemoryKind
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.runtime.attachments import describe, prompt_section, stored
from carrier_cli.runtime.types import IncomingMessage
from tests.support.model_server import FakeModelServer

Make = Callable[..., Awaitable[AgentRuntime]]


def png(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def picture(**extra: object) -> dict[str, object]:
    return {
        "filename": "cat.png",
        "content_type": "image/png",
        "size": len(png()),
        "url": "https://cdn.discordapp.com/attachments/1/2/cat.png",
        "kind": "image",
        "width": 64,
        "height": 48,
        "data": png(),
        "mime": "image/png",
        **extra,
    }


def message(text: str, key: str, attachments: list[dict[str, object]]) -> IncomingMessage:
    return IncomingMessage(
        text=text,
        source="discord",
        room_key="room-1",
        sender_key="u1",
        sender_name="Bob",
        message_key=key,
        is_direct=True,
        attachments=attachments,
    )


@pytest.fixture
async def make(store: MemoryStore, model_server: FakeModelServer) -> AsyncIterator[Make]:
    made: list[AgentRuntime] = []

    async def build(model_name: str = "gpt-4o-mini", vision: bool | None = None) -> AgentRuntime:
        character = Character(name="Eliza", bio=["Eliza looks closely."])
        character.model.vision = vision
        model = OpenAIChatModel(
            api_key="sk-test",
            base_url=model_server.openai_base_url,
            retry=RetryPolicy(max_retries=0),
        )
        config = ModelConfig(provider="openai", large=model_name, small=model_name)
        runtime = await AgentRuntime.create(
            character, Settings(), store=store, model=model, model_config=config
        )
        runtime._owns_model = True  # closed with the runtime
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        await runtime.aclose()


def reply_request(server: FakeModelServer) -> object:
    return [r for r in server.requests("/v1/chat/completions") if "<actions>" in r.prompt_text][-1]


async def test_a_vision_model_gets_the_image_and_answers_about_it(
    make: Make, model_server: FakeModelServer, store: MemoryStore
) -> None:
    runtime = await make("gpt-4o-mini")
    result = await runtime.handle_message(message("what is this?", "m1", [picture()]))
    request = reply_request(model_server)
    assert request.images == [("image/png", png())]  # type: ignore[attr-defined]
    assert "included with this prompt" in request.prompt_text  # type: ignore[attr-defined]
    assert result.text is not None and "mostly red" in result.text
    # Memory keeps the description, never the bytes.
    stored_message = await store.get(result.message_id)
    assert stored_message is not None
    (kept,) = stored_message.content["attachments"]
    assert describe(kept) == "[image: cat.png, 64x48]"
    assert "data" not in kept and "text" not in kept


async def test_a_text_only_model_is_told_it_cannot_see_the_image(
    make: Make, model_server: FakeModelServer
) -> None:
    model_server.text_only = ["gpt-3.5-turbo"]  # it would answer images with a 400
    runtime = await make("gpt-3.5-turbo")
    result = await runtime.handle_message(message("what is this?", "m2", [picture()]))
    request = reply_request(model_server)
    assert request.images == []  # type: ignore[attr-defined]
    prompt = request.prompt_text  # type: ignore[attr-defined]
    assert "Bob: what is this? [image: cat.png, 64x48]" in prompt
    assert "that you cannot see" in prompt and "pretend" in prompt
    assert result.text is not None and "[image: cat.png, 64x48]" in result.text
    assert "saw image" not in result.text


async def test_the_character_can_turn_images_off_for_a_vision_model(
    make: Make, model_server: FakeModelServer
) -> None:
    runtime = await make("gpt-4o", vision=False)
    await runtime.handle_message(message("and this?", "m3", [picture()]))
    assert reply_request(model_server).images == []  # type: ignore[attr-defined]


async def test_a_text_attachment_is_in_the_turns_context_not_in_memory(
    make: Make, model_server: FakeModelServer, store: MemoryStore
) -> None:
    runtime = await make("gpt-4o-mini")
    notes = {
        "filename": "notes.pdf",
        "content_type": "application/pdf",
        "size": 900,
        "kind": "text",
        "text": "The launch window opens on 12 March at 06:14 UTC.",
    }
    result = await runtime.handle_message(message("summarise", "m4", [notes]))
    prompt = reply_request(model_server).prompt_text  # type: ignore[attr-defined]
    assert "## notes.pdf\nThe launch window opens on 12 March" in prompt
    stored_message = await store.get(result.message_id)
    assert stored_message is not None
    assert describe(stored_message.content["attachments"][0]) == "[file: notes.pdf]"
    messages = await store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.MESSAGE])
    assert all("launch window" not in m.text for m in messages)


def test_descriptions_and_limits_in_the_prompt() -> None:
    too_big = {"filename": "huge.png", "kind": "image", "note": "larger than the 10 MB limit"}
    assert describe(too_big) == "[image: huge.png, not read: larger than the 10 MB limit]"
    section = prompt_section([picture(), too_big], "Bob", sees_images=True)
    assert "an image, included with this prompt" in section
    assert "Not shown: [image: huge.png, not read" in section
    assert "data" not in stored([picture()])[0]
    assert describe(stored([picture()])[0]) == "[image: cat.png, 64x48]"
    long_text = {"filename": "a.txt", "kind": "text", "text": "x" * 50_000}
    assert "(cut short)" in prompt_section([long_text], "Bob", sees_images=False)
