"""OpenAIChatModel through the real `openai` SDK against the fake model server."""

from __future__ import annotations

import pytest

from carrier_cli.errors import CarrierError
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.errors import (
    BadRequest,
    KeyRejected,
    ProviderResponseError,
    ProviderUnavailable,
    UnknownModel,
)
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from tests.support.model_server import FakeModelServer, Reply

KEY = "sk-test-0123456789abcdefSECRET"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, total_budget=10.0)
MESSAGES = [
    ChatMessage("system", "You are Eliza."),
    ChatMessage("user", "Earlier question"),
    ChatMessage("assistant", "Earlier answer"),
    ChatMessage("user", "What is the weather\non Mars?"),
]
PARAMS = GenerationParams(model="gpt-4o-mini", temperature=0.3, max_tokens=99)
# The HTTP stack under the SDK (openai_http_transport): every test here runs on both.
TRANSPORT: dict[str, str] = {"name": "httpx"}


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def http_transport(request: pytest.FixtureRequest) -> str:
    TRANSPORT["name"] = request.param
    return str(request.param)


def make_model(server: FakeModelServer, **kwargs: object) -> OpenAIChatModel:
    options: dict[str, object] = {
        "api_key": KEY,
        "base_url": server.openai_base_url,
        "timeout": 2.0,
        "retry": FAST,
        "http_transport": TRANSPORT["name"],
    }
    options.update(kwargs)
    return OpenAIChatModel(**options)  # type: ignore[arg-type]


async def test_complete_sends_the_prompt_and_returns_the_text(
    model_server: FakeModelServer,
) -> None:
    model_server.push("Hello from the fake.")
    model = make_model(model_server)
    try:
        assert await model.complete(MESSAGES, PARAMS) == "Hello from the fake."
    finally:
        await model.aclose()
    [request] = model_server.requests("/v1/chat/completions")
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["temperature"] == 0.3
    assert request.body["max_completion_tokens"] == 99
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "user"]
    assert request.messages[-1]["content"] == "What is the weather\non Mars?"
    assert "authorization" not in request.headers  # the recorder hides credentials


async def test_default_reply_is_the_runtime_xml_format(model_server: FakeModelServer) -> None:
    model = make_model(model_server)
    try:
        text = await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert text.startswith("<response><thought>")
    assert "<actions>REPLY</actions>" in text
    assert "<text>Echo: on Mars?</text>" in text


async def test_stream_yields_deltas_that_join_to_the_reply(model_server: FakeModelServer) -> None:
    model_server.push(Reply(text="one two three four"))
    model = make_model(model_server)
    try:
        deltas = [d async for d in model.stream(MESSAGES, PARAMS)]
    finally:
        await model.aclose()
    assert len(deltas) == 4
    assert "".join(deltas) == "one two three four"
    assert model_server.requests()[0].body["stream"] is True


async def test_compatible_servers_get_max_tokens(model_server: FakeModelServer) -> None:
    model = make_model(model_server, name="ollama", api_key="ollama")
    try:
        await model.complete(MESSAGES, GenerationParams(model="llama3.2", max_tokens=50))
    finally:
        await model.aclose()
    body = model_server.requests()[0].body
    assert body["max_tokens"] == 50
    assert "max_completion_tokens" not in body


async def test_429_waits_for_retry_after_then_succeeds(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=429, headers={"Retry-After": "0.4"}), Reply(text="finally"))
    # Zero backoff: any wait between the attempts can only come from Retry-After.
    model = make_model(model_server, retry=RetryPolicy(base_delay=0.0))
    try:
        assert await model.complete(MESSAGES, PARAMS) == "finally"
    finally:
        await model.aclose()
    first, second = model_server.requests()
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.38


async def test_retry_after_ms_is_preferred(model_server: FakeModelServer) -> None:
    model_server.push(
        Reply(status=429, headers={"retry-after-ms": "300", "Retry-After": "30"}), "ok"
    )
    model = make_model(model_server, retry=RetryPolicy(base_delay=0.0))
    try:
        assert await model.complete(MESSAGES, PARAMS) == "ok"
    finally:
        await model.aclose()
    first, second = model_server.requests()
    assert second.time - first.time >= 0.28
    assert second.time - first.time < 15  # not the 30 s of Retry-After


async def test_retry_after_longer_than_allowed_fails_at_once(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=429, headers={"Retry-After": "3600"}))
    model = make_model(model_server)
    try:
        with pytest.raises(ProviderUnavailable, match="wait 3600 s"):
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 1


async def test_500_is_retried_then_succeeds(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=500), Reply(status=503), Reply(text="recovered"))
    model = make_model(model_server)
    try:
        assert await model.complete(MESSAGES, PARAMS) == "recovered"
    finally:
        await model.aclose()
    assert [r.status for r in model_server.requests()] == [500, 503, 200]


async def test_retries_are_bounded(model_server: FakeModelServer) -> None:
    model_server.push(*[Reply(status=500) for _ in range(10)])
    model = make_model(model_server, retry=RetryPolicy(max_retries=2, base_delay=0.01))
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 3  # first attempt + 2 retries
    assert "server error (500)" in str(info.value)
    assert "3 attempts" in str(info.value)
    assert info.value.exit_code == 1


async def test_total_budget_bounds_retries(model_server: FakeModelServer) -> None:
    model_server.push(*[Reply(status=429, headers={"Retry-After": "0.3"}) for _ in range(10)])
    policy = RetryPolicy(max_retries=50, base_delay=0.01, total_budget=1.0)
    model = make_model(model_server, retry=policy)
    try:
        with pytest.raises(ProviderUnavailable, match="rate limited"):
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert 2 <= len(model_server.requests()) <= 5


async def test_401_says_the_key_was_rejected_without_showing_it(
    model_server: FakeModelServer,
) -> None:
    model_server.expect_key = "sk-the-right-one"
    model = make_model(model_server)
    try:
        with pytest.raises(KeyRejected) as info:
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    message = str(info.value)
    assert "rejected (401)" in message
    assert "carrier keys set openai" in message
    assert KEY not in message and KEY[-6:] not in message
    assert len(model_server.requests()) == 1  # 401 is never retried


async def test_400_is_not_retried(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=400, error_message="max_tokens is too large"))
    model = make_model(model_server)
    try:
        with pytest.raises(BadRequest, match="max_tokens is too large"):
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 1


async def test_unknown_model_explains_how_to_list_models(model_server: FakeModelServer) -> None:
    model_server.models = ["gpt-4o"]
    model = make_model(model_server)
    try:
        with pytest.raises(UnknownModel) as info:
            await model.complete(MESSAGES, PARAMS)
        assert await model.list_models() == ["gpt-4o"]
    finally:
        await model.aclose()
    message = str(info.value)
    assert "'gpt-4o-mini'" in message
    assert f"{model_server.openai_base_url}/models" in message
    assert info.value.exit_code == 2


async def test_slow_response_times_out_and_is_retried(model_server: FakeModelServer) -> None:
    model_server.push(Reply(delay=3.0, text="too late"), Reply(text="in time"))
    model = make_model(model_server, timeout=1.0)
    try:
        assert await model.complete(MESSAGES, PARAMS) == "in time"
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 2


async def test_timeouts_are_bounded(model_server: FakeModelServer) -> None:
    model_server.push(*[Reply(delay=1.0) for _ in range(5)])
    model = make_model(model_server, timeout=0.3, retry=RetryPolicy(max_retries=1, base_delay=0.01))
    try:
        with pytest.raises(ProviderUnavailable, match="timeout"):
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 2


async def test_malformed_json_is_a_clear_error(model_server: FakeModelServer) -> None:
    model_server.push(Reply(malformed=True))
    model = make_model(model_server)
    try:
        with pytest.raises(ProviderResponseError, match="could not read"):
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()


async def test_malformed_stream_is_a_clear_error(model_server: FakeModelServer) -> None:
    model_server.push(Reply(malformed=True, text="a b c"))
    model = make_model(model_server)
    try:
        with pytest.raises(ProviderResponseError):
            async for _ in model.stream(MESSAGES, PARAMS):
                pass
    finally:
        await model.aclose()


async def test_stream_retries_before_the_first_token(model_server: FakeModelServer) -> None:
    model_server.push(Reply(status=502), Reply(text="streamed fine"))
    model = make_model(model_server)
    try:
        assert "".join([d async for d in model.stream(MESSAGES, PARAMS)]) == "streamed fine"
    finally:
        await model.aclose()
    assert [r.status for r in model_server.requests()] == [502, 200]


async def test_stream_does_not_retry_after_a_token(model_server: FakeModelServer) -> None:
    model_server.push(Reply(text="one two three four five", disconnect_after=2), "unused")
    model = make_model(model_server)
    received: list[str] = []
    try:
        with pytest.raises(ProviderUnavailable, match="mid-stream"):
            async for delta in model.stream(MESSAGES, PARAMS):
                received.append(delta)
    finally:
        await model.aclose()
    assert "".join(received) == "one two "
    assert len(model_server.requests()) == 1


async def test_connection_refused_names_the_base_url() -> None:
    import socket

    # A port that nothing listens on: held bound (never listening) for the whole test, so no
    # other server can be given it meanwhile; connecting to it is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1"
        model = OpenAIChatModel(
            api_key=KEY,
            base_url=url,
            timeout=1.0,
            retry=RetryPolicy(max_retries=1, base_delay=0.01),
            http_transport=TRANSPORT["name"],  # type: ignore[arg-type]
        )
        try:
            with pytest.raises(ProviderUnavailable) as info:
                await model.complete(MESSAGES, PARAMS)
        finally:
            await model.aclose()
    assert url in str(info.value)
    assert "2 attempts" in str(info.value)
    # A refusal, not a timeout, on either transport (aiohttp's vendored mapping said timeout).
    assert "ConnectError" in str(info.value)
    assert "(timeout)" not in str(info.value)


async def test_missing_authorization_header_gets_openai_style_401(
    model_server: FakeModelServer,
) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            model_server.openai_base_url + "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": []},
        ) as response,
    ):
        assert response.status == 401
        body = await response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert "API key" in body["error"]["message"]


async def test_unreachable_ollama_says_how_to_start_it() -> None:
    import socket

    with socket.socket() as sock:  # bound, never listening: refused, and not reusable
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        model = OpenAIChatModel(
            api_key="ollama",
            base_url=f"http://127.0.0.1:{port}/v1",
            name="ollama",
            retry=RetryPolicy(max_retries=0),
            http_transport=TRANSPORT["name"],  # type: ignore[arg-type]
        )
        try:
            with pytest.raises(ProviderUnavailable) as info:
                await model.complete(MESSAGES, GenerationParams(model="llama3.2"))
        finally:
            await model.aclose()
    assert "Ollama at" in str(info.value)
    assert "ollama serve" in str(info.value)


async def test_stop_sequences_are_capped_at_four(model_server: FakeModelServer) -> None:
    model = make_model(model_server)
    try:
        await model.complete(
            MESSAGES, GenerationParams(model="gpt-4o-mini", stop=["a", "b", "c", "d", "e"])
        )
    finally:
        await model.aclose()
    assert model_server.requests()[0].body["stop"] == ["a", "b", "c", "d"]


async def test_in_stream_error_event(model_server: FakeModelServer) -> None:
    model_server.push(Reply(text="a b c", stream_error_after=0), Reply(text="second try"))
    model = make_model(model_server)
    try:
        assert "".join([d async for d in model.stream(MESSAGES, PARAMS)]) == "second try"
        model_server.push(Reply(text="a b c", stream_error_after=2))
        received: list[str] = []
        with pytest.raises(ProviderUnavailable, match="server_error"):
            async for delta in model.stream(MESSAGES, PARAMS):
                received.append(delta)
        assert received == ["a ", "b "]
    finally:
        await model.aclose()
    assert len(model_server.requests()) == 3


async def test_base_url_without_v1_is_explained(model_server: FakeModelServer) -> None:
    from carrier_cli.errors import RuntimeFailure

    model = make_model(model_server, base_url=model_server.url)  # forgot the /v1
    try:
        with pytest.raises(RuntimeFailure) as info:
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert not isinstance(info.value, UnknownModel)
    assert "/v1" in str(info.value) and model_server.url in str(info.value)


async def test_overlong_prompt_is_trimmed_to_the_window(model_server: FakeModelServer) -> None:
    history = [
        ChatMessage("user" if i % 2 else "assistant", f"old {i} " + "w" * 400) for i in range(20)
    ]
    messages = [
        ChatMessage("system", "You are Eliza."),
        *history,
        ChatMessage("user", "newest question"),
    ]
    model = make_model(model_server, name="ollama", context_window=1000)
    try:
        await model.complete(messages, GenerationParams(model="llama3.2", max_tokens=200))
    finally:
        await model.aclose()
    sent = model_server.requests()[0].messages
    assert sent[0]["content"] == "You are Eliza."
    assert sent[-1]["content"] == "newest question"
    assert 2 < len(sent) < len(messages)
    assert sent[1]["content"].startswith(f"old {20 - (len(sent) - 2)} ")  # oldest went first


async def test_a_huge_error_text_is_cut_to_one_short_line(model_server: FakeModelServer) -> None:
    """A gateway that echoes the whole request (or an HTML page) into its error must not
    bury the operator's message: the server's text is kept to 500 characters, one line."""
    model_server.push(Reply(status=400, error_message="bad request\n" + "<html>x</html>" * 10_000))
    model = make_model(model_server)
    try:
        with pytest.raises(BadRequest) as info:
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    message = str(info.value)
    assert "bad request <html>x</html>" in message
    assert len(message) < 1_000 and "\n" not in message.split("…")[0]
    assert message.count("<html>") < 40


async def test_an_unanswered_status_is_named_with_a_short_detail(
    model_server: FakeModelServer,
) -> None:
    model_server.push(Reply(status=409, error_message="conflict " + "y" * 50_000))
    model = make_model(model_server)
    try:
        with pytest.raises(CarrierError) as info:
            await model.complete(MESSAGES, PARAMS)
    finally:
        await model.aclose()
    assert "409" in str(info.value) and len(str(info.value)) < 1_000
