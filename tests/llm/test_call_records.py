"""One CallRecord per provider attempt, checked against what the fake server reported,
through the real openai/anthropic SDKs."""

from __future__ import annotations

import uuid

import pytest

from carrier_cli.llm.anthropic_chat import AnthropicChatModel
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.errors import ProviderUnavailable
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.openai_embeddings import OpenAIEmbedder
from carrier_cli.llm.retry import RetryPolicy
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.llm.tokens import count_message_tokens, count_tokens
from carrier_cli.usage.records import CallRecord, calling
from tests.support.model_server import FakeModelServer, Reply

KEY = "sk-test-records-0123456789abcdef"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, total_budget=10.0)
MESSAGES = [ChatMessage("system", "You are Eliza."), ChatMessage("user", "Hello there, Eliza.")]


def openai_model(server: FakeModelServer, records: list[CallRecord]) -> OpenAIChatModel:
    return OpenAIChatModel(
        api_key=KEY,
        base_url=server.openai_base_url,
        timeout=2.0,
        retry=FAST,
        observers=[records.append],
    )


def anthropic_model(server: FakeModelServer, records: list[CallRecord]) -> AnthropicChatModel:
    model = AnthropicChatModel(
        api_key=KEY, base_url=server.anthropic_base_url, timeout=2.0, retry=FAST
    )
    model.observers.append(records.append)  # appended later, as the runtime does
    return model


async def _stream(model: OpenAIChatModel | AnthropicChatModel, params: GenerationParams) -> str:
    return "".join([piece async for piece in model.stream(MESSAGES, params)])


async def test_openai_complete_records_the_reported_usage(model_server: FakeModelServer) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(text="Hi!", cached_tokens=2))
    model = openai_model(model_server, records)
    turn = uuid.uuid4()
    try:
        with calling(purpose="reply", character="Eliza", client="terminal", turn_id=turn):
            assert await model.complete(MESSAGES, GenerationParams(model="gpt-4o-mini")) == "Hi!"
    finally:
        await model.aclose()
    [request] = model_server.requests("/v1/chat/completions")
    assert request.usage is not None
    [record] = records
    assert (record.provider, record.model, record.outcome, record.attempt) == (
        "openai",
        "gpt-4o-mini",
        "ok",
        1,
    )
    assert record.usage.input_tokens == request.usage["prompt_tokens"]
    assert record.usage.output_tokens == request.usage["completion_tokens"]
    assert record.usage.cached_tokens == 2
    assert not record.usage.estimated
    assert record.context.purpose == "reply"
    assert record.context.character == "Eliza"
    assert record.context.client == "terminal"
    assert record.context.turn_id == turn
    assert record.total_ms > 0 and record.first_token_ms is None
    assert record.output == "Hi!" and "Hello there" in (record.prompt or "")


async def test_openai_stream_asks_for_and_records_the_usage_chunk(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    model_server.push("Streaming hello to you")
    model = openai_model(model_server, records)
    try:
        assert await _stream(model, GenerationParams(model="gpt-4o")) == "Streaming hello to you"
    finally:
        await model.aclose()
    [request] = model_server.requests("/v1/chat/completions")
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.usage is not None
    [record] = records
    assert record.usage.input_tokens == request.usage["prompt_tokens"]
    assert record.usage.output_tokens == request.usage["completion_tokens"]
    assert not record.usage.estimated
    assert record.first_token_ms is not None and record.first_token_ms <= record.total_ms
    assert record.output == "Streaming hello to you"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_server_reporting_no_usage_gives_estimated_records(
    model_server: FakeModelServer, stream: bool
) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(text="No usage from me", report_usage=False))
    model = openai_model(model_server, records)
    params = GenerationParams(model="llama3.1")
    try:
        if stream:
            await _stream(model, params)
        else:
            await model.complete(MESSAGES, params)
    finally:
        await model.aclose()
    assert model_server.requests()[0].usage is None
    [record] = records
    assert record.usage.estimated
    assert record.usage.input_tokens == count_message_tokens(MESSAGES, "llama3.1")
    assert record.usage.output_tokens == count_tokens("No usage from me", "llama3.1")


@pytest.mark.parametrize("stream", [False, True])
async def test_retried_attempts_leave_one_record_each(
    model_server: FakeModelServer, stream: bool
) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(status=429), Reply(status=500), Reply(text="third time lucky"))
    model = openai_model(model_server, records)
    params = GenerationParams(model="gpt-4o-mini")
    try:
        if stream:
            await _stream(model, params)
        else:
            await model.complete(MESSAGES, params)
    finally:
        await model.aclose()
    assert len(model_server.requests("/v1/chat/completions")) == 3
    assert [(r.attempt, r.outcome, r.error_code) for r in records] == [
        (1, "retried", "429"),
        (2, "retried", "500"),
        (3, "ok", None),
    ]
    assert records[0].usage.input_tokens is None  # nothing was reported for a failure
    assert records[2].usage.input_tokens == model_server.requests()[2].usage["prompt_tokens"]  # type: ignore[index]


async def test_a_call_that_fails_for_good_records_its_last_attempt_as_failed(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    model_server.push(*[Reply(status=503) for _ in range(4)])
    model = openai_model(model_server, records)
    try:
        with pytest.raises(ProviderUnavailable):
            await model.complete(MESSAGES, GenerationParams(model="gpt-4o-mini"))
    finally:
        await model.aclose()
    assert [r.outcome for r in records] == ["retried", "retried", "retried", "failed"]
    assert {r.error_code for r in records} == {"503"}


async def test_a_refused_request_is_one_failed_record(model_server: FakeModelServer) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(status=400, error_message="bad"))
    model = openai_model(model_server, records)
    try:
        with pytest.raises(Exception, match="bad"):
            await model.complete(MESSAGES, GenerationParams(model="gpt-4o-mini"))
    finally:
        await model.aclose()
    assert [(r.outcome, r.error_code) for r in records] == [("failed", "400")]


async def test_anthropic_complete_records_usage_with_cache_reads(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(text="Hello.", cached_tokens=3))
    model = anthropic_model(model_server, records)
    try:
        await model.complete(MESSAGES, GenerationParams(model="claude-haiku-4-5"))
    finally:
        await model.aclose()
    [request] = model_server.requests("/v1/messages")
    reported = request.usage
    assert reported is not None
    [record] = records
    assert record.provider == "anthropic"
    # Input includes the cache reads (Anthropic reports them apart), so one cost rule fits.
    assert record.usage.input_tokens == reported["input_tokens"] + 3
    assert record.usage.cached_tokens == 3
    assert record.usage.output_tokens == reported["output_tokens"]


async def test_anthropic_stream_reads_message_start_and_message_delta(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(text="A longer streamed answer from Claude."))
    model = anthropic_model(model_server, records)
    try:
        text = await _stream(model, GenerationParams(model="claude-sonnet-4-5"))
    finally:
        await model.aclose()
    assert text == "A longer streamed answer from Claude."
    reported = model_server.requests("/v1/messages")[0].usage
    assert reported is not None
    [record] = records
    assert record.usage.input_tokens == reported["input_tokens"]  # message_start
    assert record.usage.output_tokens == reported["output_tokens"]  # message_delta
    assert record.usage.output_tokens > 1  # not message_start's placeholder
    assert not record.usage.estimated
    assert record.first_token_ms is not None


async def test_anthropic_overloaded_then_ok_is_two_records(model_server: FakeModelServer) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(status=529), Reply(text="ok now"))
    model = anthropic_model(model_server, records)
    try:
        await _stream(model, GenerationParams(model="claude-sonnet-4-5"))
    finally:
        await model.aclose()
    assert [(r.outcome, r.error_code) for r in records] == [("retried", "529"), ("ok", None)]


async def test_embedder_records_input_tokens_with_purpose_embedding(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    embedder = OpenAIEmbedder(
        api_key=KEY, base_url=model_server.openai_base_url, observers=[records.append]
    )
    try:
        with calling(purpose="reply", character="Eliza"):
            await embedder.embed(["one text", "another text"])
    finally:
        await embedder.aclose()
    [request] = model_server.requests("/v1/embeddings")
    [record] = records
    assert record.context.purpose == "embedding"
    assert record.context.character == "Eliza"
    assert record.model == "text-embedding-3-small"
    assert record.usage.input_tokens == request.usage["prompt_tokens"]  # type: ignore[index]
    assert record.usage.output_tokens == 0


async def test_scripted_model_records_estimated_tokens() -> None:
    records: list[CallRecord] = []
    model = ScriptedChatModel(["one", "two two"], observers=[records.append])
    params = GenerationParams(model="default")
    await model.complete(MESSAGES, params)
    assert "".join([p async for p in model.stream(MESSAGES, params)]) == "two two"
    assert [r.outcome for r in records] == ["ok", "ok"]
    assert all(r.usage.estimated for r in records)
    assert records[1].usage.output_tokens == count_tokens("two two", "default")
    assert records[1].first_token_ms is not None


async def test_no_observers_no_records_and_a_failing_observer_fails_nothing(
    model_server: FakeModelServer,
) -> None:
    def broken(record: CallRecord) -> None:
        raise RuntimeError("observer bug")

    model_server.push("fine")
    model = OpenAIChatModel(api_key=KEY, base_url=model_server.openai_base_url, retry=FAST)
    model.observers.append(broken)
    try:
        assert await model.complete(MESSAGES, GenerationParams(model="gpt-4o")) == "fine"
    finally:
        await model.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_closed_by_the_caller_is_recorded_as_cancelled(
    model_server: FakeModelServer, provider: str
) -> None:
    records: list[CallRecord] = []
    model_server.push(Reply(text="one two three four five six", chunk_delay=0.01))
    model = (
        openai_model(model_server, records)
        if provider == "openai"
        else anthropic_model(model_server, records)
    )
    try:
        stream = model.stream(MESSAGES, GenerationParams(model="gpt-4o"))
        async for _ in stream:
            break  # the user pressed Ctrl-C: the tokens so far may still be billed
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await model.aclose()
    [record] = records
    assert (record.outcome, record.error_code) == ("failed", "cancelled")
    assert record.first_token_ms is not None


async def test_a_server_refusing_stream_options_is_asked_again_without(
    model_server: FakeModelServer,
) -> None:
    records: list[CallRecord] = []
    model_server.push(
        Reply(status=400, error_message="Unrecognized request argument supplied: stream_options"),
        Reply(text="streamed anyway"),
        Reply(text="and again"),
    )
    model = openai_model(model_server, records)
    params = GenerationParams(model="gpt-4o")
    try:
        assert await _stream(model, params) == "streamed anyway"
        assert await _stream(model, params) == "and again"
    finally:
        await model.aclose()
    bodies = [r.body for r in model_server.requests("/v1/chat/completions")]
    assert "stream_options" in bodies[0]
    assert "stream_options" not in bodies[1] and "stream_options" not in bodies[2]
    assert [(r.outcome, r.error_code) for r in records] == [
        ("retried", "400"),
        ("ok", None),
        ("ok", None),
    ]
    assert records[1].usage.estimated
