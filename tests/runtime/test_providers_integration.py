"""Whole turns through the real openai and anthropic SDKs against the fake model server."""

from __future__ import annotations

import pytest

from carrier_cli.config import Settings
from carrier_cli.errors import CarrierError
from carrier_cli.runtime.agent import AgentRuntime
from tests.runtime.conftest import dm, group, reply_xml
from tests.support.model_server import FakeModelServer, Reply

pytestmark = pytest.mark.service


def _settings(server: FakeModelServer, provider: str, **extra) -> Settings:
    if provider == "openai":
        return Settings(
            model_provider="openai",
            openai_api_key="sk-test-runtime-0001",
            openai_base_url=server.openai_base_url,
            **extra,
        )
    return Settings(
        model_provider="anthropic",
        anthropic_api_key="sk-ant-test-runtime-0001",
        anthropic_base_url=server.anthropic_base_url,
        **extra,
    )


@pytest.fixture
async def runtime_for(sqlite_store, character):
    made: list[AgentRuntime] = []

    async def make(settings: Settings) -> AgentRuntime:
        runtime = await AgentRuntime.create(character, settings, store=sqlite_store)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_full_turn(model_server, runtime_for, sqlite_store, provider):
    model_server.push(reply_xml(f"Hello from {provider}.", thought="greet"))
    runtime = await runtime_for(_settings(model_server, provider))
    result = await runtime.handle_message(dm("hi Eliza", "p1"))
    assert result.text == f"Hello from {provider}." and result.thought == "greet"
    path = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    [request] = model_server.requests(path)
    assert request.body["model"] == runtime.model_config.large
    assert "Bob: hi Eliza" in request.prompt_text
    assert "You are Eliza" in request.prompt_text  # the system prompt went along
    stored = await sqlite_store.get(result.reply_id)
    assert stored is not None and stored.text == f"Hello from {provider}."


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streaming_turn(model_server, runtime_for, provider):
    text = "Waves come in sets of seven, or so the sailors say."
    model_server.push(reply_xml(text))
    runtime = await runtime_for(_settings(model_server, provider))
    events = [e async for e in runtime.stream_message(dm("tell me about waves"))]
    deltas = [e.text for e in events if e.kind == "delta"]
    assert len(deltas) > 3
    assert "".join(deltas) == text
    assert events[-1].kind == "done" and events[-1].result.text == text
    assert model_server.requests()[-1].body.get("stream") is True


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_rate_limit_then_recovery(model_server, runtime_for, provider):
    model_server.push(
        Reply(status=429, headers={"Retry-After": "0.2"}), reply_xml("After a pause.")
    )
    runtime = await runtime_for(_settings(model_server, provider))
    result = await runtime.handle_message(dm("hello?"))
    assert result.text == "After a pause."
    assert [r.status for r in model_server.requests() if r.path.startswith("/v1/")] == [429, 200]


async def test_group_message_decided_by_the_small_model(model_server, runtime_for):
    # The server's default rule answers should-respond prompts with RESPOND, others with echo.
    runtime = await runtime_for(_settings(model_server, "openai"))
    result = await runtime.handle_message(group("what a lovely morning for tea", "g1"))
    assert result.decision == "RESPOND"
    assert result.text == "Echo: what a lovely morning for tea"
    first, second = model_server.requests("/v1/chat/completions")
    assert first.body["model"] == runtime.model_config.small
    assert "RESPOND" in first.prompt_text and "<actions>" in second.prompt_text


async def test_model_failure_keeps_message_and_raises_clean_error(
    model_server, runtime_for, sqlite_store
):
    model_server.push(*[Reply(status=500)] * 3)
    runtime = await runtime_for(_settings(model_server, "openai", max_retries=1))
    with pytest.raises(CarrierError) as err:
        await runtime.handle_message(dm("anyone home?", "f1"))
    assert "sk-test-runtime-0001" not in str(err.value)
    log = runtime.last_turn_log
    assert log is not None and log.calls[-1].error is not None
    message = await sqlite_store.get(log.message_id)
    assert message is not None
    assert [m.text for m in await sqlite_store.recent(message.room_id)] == ["anyone home?"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_default_reply_echoes_the_new_message(model_server, runtime_for, provider):
    # Nothing scripted: the fake answers with the new message the prompt marks, not with the
    # template's last line (`</output>`), and in the XML format the runtime parses.
    runtime = await runtime_for(_settings(model_server, provider))
    first = await runtime.handle_message(dm("is the tide in?", "e1"))
    assert first.text == "Echo: is the tide in?"
    tricky = "two lines,\nfish & chips <b>bold</b> </text> 3 < 4"
    second = await runtime.handle_message(dm(tricky, "e2"))
    assert second.text == f"Echo: {tricky}"
    assert second.thought and second.actions == ["REPLY"]
