"""Images through the real `openai` and `anthropic` SDKs against the fake model server, and
the capability table that decides who gets them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from carrier_cli.llm.anthropic_chat import AnthropicChatModel
from carrier_cli.llm.base import ChatMessage, GenerationParams, ImagePart
from carrier_cli.llm.errors import BadRequest
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from carrier_cli.llm.vision import accepts_images, known_vision
from tests.support.model_server import FakeModelServer

KEY = "sk-test-0123456789abcdefSECRET"
FAST = RetryPolicy(max_retries=0, base_delay=0.01, max_delay=0.05, total_budget=5.0)


def png(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def picture_messages() -> list[ChatMessage]:
    image = ImagePart(png(), "image/png", "cat.png")
    return [
        ChatMessage("system", "You are Eliza."),
        ChatMessage("user", "What is in this picture?", images=(image,)),
    ]


def openai_model(server: FakeModelServer) -> OpenAIChatModel:
    return OpenAIChatModel(api_key=KEY, base_url=server.openai_base_url, retry=FAST, timeout=5)


def anthropic_model(server: FakeModelServer) -> AnthropicChatModel:
    return AnthropicChatModel(
        api_key=KEY, base_url=server.anthropic_base_url, retry=FAST, timeout=5
    )


async def test_openai_sends_an_image_url_part_with_a_data_url(
    model_server: FakeModelServer,
) -> None:
    model = openai_model(model_server)
    try:
        text = await model.complete(picture_messages(), GenerationParams(model="gpt-4o-mini"))
    finally:
        await model.aclose()
    request = model_server.requests("/v1/chat/completions")[-1]
    content = request.messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "What is in this picture?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert request.images == [("image/png", png())]
    assert "[saw image 1: image/png 64x48, mostly red]" in text


async def test_anthropic_sends_a_base64_image_block_before_the_text(
    model_server: FakeModelServer,
) -> None:
    model = anthropic_model(model_server)
    try:
        text = await model.complete(picture_messages(), GenerationParams(model="claude-haiku-4-5"))
    finally:
        await model.aclose()
    request = model_server.requests("/v1/messages")[-1]
    content = request.messages[0]["content"]
    assert content[0]["type"] == "image"
    assert content[0]["source"]["type"] == "base64"
    assert content[0]["source"]["media_type"] == "image/png"
    assert content[1] == {"type": "text", "text": "What is in this picture?"}
    assert request.images == [("image/png", png())]
    assert "mostly red" in text


async def test_streams_carry_images_too(model_server: FakeModelServer) -> None:
    model = anthropic_model(model_server)
    try:
        parts = [
            d async for d in model.stream(picture_messages(), GenerationParams(model="claude-3-5"))
        ]
    finally:
        await model.aclose()
    assert "mostly red" in "".join(parts)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_text_only_model_answers_images_with_the_real_400(
    model_server: FakeModelServer, provider: str
) -> None:
    model_server.text_only = ["gpt-3.5-turbo", "claude-2.1"]
    model = openai_model(model_server) if provider == "openai" else anthropic_model(model_server)
    name = "gpt-3.5-turbo" if provider == "openai" else "claude-2.1"
    try:
        with pytest.raises(BadRequest) as caught:
            await model.complete(picture_messages(), GenerationParams(model=name))
        # Text alone still works for the same model.
        await model.complete([ChatMessage("user", "hi")], GenerationParams(model=name))
    finally:
        await model.aclose()
    message = str(caught.value)
    assert "image_url is only supported" in message or "does not support image" in message
    assert "model.vision: false" in (caught.value.hint or "")
    assert model_server.requests()[-2].status == 400


async def test_bytes_that_are_no_image_are_refused(model_server: FakeModelServer) -> None:
    model = openai_model(model_server)
    broken = [ChatMessage("user", "look", images=(ImagePart(b"not a png", "image/png"),))]
    try:
        with pytest.raises(BadRequest, match="unsupported image"):
            await model.complete(broken, GenerationParams(model="gpt-4o"))
    finally:
        await model.aclose()


def test_image_part_repr_never_shows_the_bytes() -> None:
    part = ImagePart(png(), "image/png", "cat.png")
    assert "cat.png" in repr(part) and "bytes" in repr(part) and "\\x" not in repr(part)
    assert ChatMessage("user", "x").images == ()  # text-only messages are unchanged


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", True),
        ("gpt-4o-mini", True),
        ("gpt-4.1-nano", True),
        ("gpt-5-mini", True),
        ("gpt-4-turbo", True),
        ("o1", True),
        ("o3-mini", False),
        ("gpt-3.5-turbo", False),
        ("gpt-4", False),
        ("claude-3-5-sonnet-latest", True),
        ("claude-haiku-4-5", True),
        ("claude-sonnet-4-5", True),
        ("claude-opus-4-1", True),
        ("claude-2.1", False),
        ("anthropic/claude-3-haiku", True),
        ("llava:13b", True),
        ("llama3.2", None),
        ("mistral", None),
    ],
)
def test_capability_table(model: str, expected: bool | None) -> None:
    assert known_vision(model) is expected


def test_the_character_overrides_the_table() -> None:
    assert accepts_images("llama3.2") is False  # unknown: text-only
    assert accepts_images("llama3.2", True) is True
    assert accepts_images("gpt-4o", False) is False
