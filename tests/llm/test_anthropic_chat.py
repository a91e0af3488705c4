"""AnthropicChatModel through the real `anthropic` SDK against the fake model server."""

from __future__ import annotations

import pytest

from carrier_cli.errors import CarrierError
from carrier_cli.llm.anthropic_chat import AnthropicChatModel, to_anthropic_messages
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.errors import (
    KeyRejected,
    ProviderResponseError,
    ProviderUnavailable,
    UnknownModel,
)
from carrier_cli.llm.retry import RetryPolicy
from tests.support.model_server import FakeModelServer, Reply

KEY = "sk-ant-test-0123456789SECRET"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, total_budget=10.0)
PARAMS = GenerationParams(model="claude-haiku-4-5", max_tokens=77, stop=["</response>"])


def make_model(server: FakeModelServer, **kwargs: object) -> AnthropicChatModel:
    options: dict[str, object] = {
        "api_key": KEY,
        "base_url": server.anthropic_base_url,
        "timeout": 2.0,
        "retry": FAST,
    }
    options.update(kwargs)
    return AnthropicChatModel(**options)  # type: ignore[arg-type]


def test_messages_are_reshaped_for_the_messages_api() -> None:
    system, turns = to_anthropic_messages(
        [
            ChatMessage("system", "Rules."),
            ChatMessage("assistant", "Hi, I'm Eliza."),
            ChatMessage("user", "first"),
            ChatMessage("user", "second"),
            ChatMessage("system", "More rules."),
            ChatMessage("assistant", "answer"),
            ChatMessage("user", ""),
        ]
    )
    assert system == "Rules.\n\nMore rules."
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[2]["content"] == "first\n\nsecond"
    assert turns[0]["content"].strip() and turns[-1]["content"].strip()


async def test_complete_puts_system_apart_and_merges_turns(model_server: FakeModelServer) -> None:
    model_server.push("Bonjour.")
    model = make_model(model_server)
    messages = [
        ChatMessage("system", "You are Eliza."),
        ChatMessage("user", "Context block"),
        ChatMessage("user", "Hello?"),
    ]
    try:
        assert await model.complete(messages, PARAMS) == "Bonjour."
    finally:
        await model.aclose()
    [request] = model_server.requests("/v1/messages")
    assert request.status == 200
    assert request.body["system"] == "You are Eliza."
    assert request.body["messages"] == [{"role": "user", "content": "Context block\n\nHello?"}]
    assert request.body["max_tokens"] == 77
    assert request.body["stop_sequences"] == ["</response>"]
    assert request.headers.get("anthropic-version")


async def test_stream_yields_text_deltas(model_server: FakeModelServer) -> None:
    model_server.push(Reply(chunks=["<response>", "<text>Hi", " there</text>", "</response>"]))
    model = make_model(model_server)
    try:
        deltas = [d async for d in model.stream([ChatMessage("user", "hey")], PARAMS)]
    finally:
        await model.aclose()
    assert deltas == ["<response>", "<text>Hi", " there</text>", "</response>"]


async def test_default_reply_answers_should_respond_prompts(model_server: FakeModelServer) -> None:
    model = make_model(model_server)
    prompt = "Should Eliza reply? Answer with exactly one word: RESPOND, IGNORE or STOP."
    try:
        assert await model.complete([ChatMessage("user", prompt)], PARAMS) == "RESPOND"
    finally:
        await model.aclose()


async def test_overloaded_and_rate_limited_are_retried(model_server: FakeModelServer) -> None:
    model_server.push(
        Reply(status=529), Reply(status=429, headers={"retry-after": "0.3"}), Reply(text="ok")
    )
    model = make_model(model_server)
    try:
        assert await model.complete([ChatMessage("user", "hi")], PARAMS) == "ok"
    finally:
        await model.aclose()
    first, second, third = model_server.requests()
    assert [first.status, second.status, third.status] == [529, 429, 200]
    assert third.time - second.time >= 0.25


async def test_stream_retries_before_first_token(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=529), Reply(text="fine now"))
    model = make_model(model_server)
    try:
        text = "".join([d async for d in model.stream([ChatMessage("user", "hi")], PARAMS)])
    finally:
        await model.aclose()
    assert text == "fine now"


async def test_stream_broken_after_tokens_is_not_retried(model_server: FakeModelServer) -> None:
    model_server.push(Reply(text="a b c d e", disconnect_after=2), "unused")
    model = make_model(model_server)
    try:
        with pytest.raises(ProviderUnavailable, match="mid-stream"):
            async for _ in model.stream([ChatMessage("user", "hi")], PARAMS):
                pass
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 1


async def test_retries_are_bounded(model_server: FakeModelServer) -> None:
    model_server.push(*[Reply(status=529) for _ in range(5)])
    model = make_model(model_server, retry=RetryPolicy(max_retries=1, base_delay=0.01))
    try:
        with pytest.raises(ProviderUnavailable, match="overloaded"):
            await model.complete([ChatMessage("user", "hi")], PARAMS)
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 2


async def test_401_is_key_rejected_without_the_key(model_server: FakeModelServer) -> None:
    model_server.expect_key = "sk-ant-other"
    model = make_model(model_server)
    try:
        with pytest.raises(KeyRejected) as info:
            await model.complete([ChatMessage("user", "hi")], PARAMS)
    finally:
        await model.aclose()
    assert "carrier keys set anthropic" in str(info.value)
    assert KEY not in str(info.value)
    assert len(model_server.requests()) == 1


async def test_unknown_model(model_server: FakeModelServer) -> None:
    model_server.models = ["claude-sonnet-4-5"]
    model = make_model(model_server)
    try:
        with pytest.raises(UnknownModel, match="claude-haiku-4-5"):
            await model.complete([ChatMessage("user", "hi")], PARAMS)
    finally:
        await model.aclose()


async def test_malformed_answers(model_server: FakeModelServer) -> None:
    model_server.push(Reply(malformed=True), Reply(malformed=True, text="x y z"))
    model = make_model(model_server)
    try:
        with pytest.raises(ProviderResponseError):
            await model.complete([ChatMessage("user", "hi")], PARAMS)
        with pytest.raises(ProviderResponseError):
            async for _ in model.stream([ChatMessage("user", "hi")], PARAMS):
                pass
    finally:
        await model.aclose()


async def test_missing_version_header_is_refused_like_the_real_api(
    model_server: FakeModelServer,
) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            model_server.anthropic_base_url + "/v1/messages",
            headers={"x-api-key": "k"},
            json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        ) as response,
    ):
        assert response.status == 400
        body = await response.json()
    assert body["type"] == "error"
    assert "anthropic-version" in body["error"]["message"]


async def test_in_stream_error_event(model_server: FakeModelServer) -> None:
    # Before any text: retried. After text: reported, not retried.
    model_server.push(Reply(text="a b c", stream_error_after=0), Reply(text="second try"))
    model = make_model(model_server)
    try:
        text = "".join([d async for d in model.stream([ChatMessage("user", "hi")], PARAMS)])
        assert text == "second try"
        model_server.push(Reply(text="a b c", stream_error_after=1))
        with pytest.raises(ProviderUnavailable, match="overloaded_error"):
            async for _ in model.stream([ChatMessage("user", "hi")], PARAMS):
                pass
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 3


async def test_base_url_with_v1_suffix_still_works(model_server: FakeModelServer) -> None:
    model = make_model(model_server, base_url=model_server.anthropic_base_url + "/v1/")
    try:
        assert "Echo: hi" in await model.complete([ChatMessage("user", "hi")], PARAMS)
    finally:
        await model.aclose()


async def test_a_huge_error_text_is_cut_to_one_short_line(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=400, error_message="prompt is too long: " + "z" * 100_000))
    model = make_model(model_server)
    try:
        with pytest.raises(CarrierError) as info:
            await model.complete([ChatMessage("user", "hi")], PARAMS)
    finally:
        await model.aclose()
    message = str(info.value)
    assert "prompt is too long" in message and len(message) < 1_000
