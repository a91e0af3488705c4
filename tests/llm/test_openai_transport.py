"""Which HTTP stack the OpenAI SDK runs on (openai_http_transport), and that the aiohttp
one behaves like httpx's: errors, mid-stream hang-ups, connection bound, proxies, close.
The request/response behaviour itself runs on both in test_openai_chat."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from carrier_cli.llm import openai_common
from carrier_cli.llm.aiohttp_transport import CarrierAiohttpTransport
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.errors import ProviderUnavailable
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from tests.support.model_server import FakeModelServer, Reply

MESSAGES = [ChatMessage("user", "hi")]
PARAMS = GenerationParams(model="gpt-4o-mini")
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def aiohttp_model(server: FakeModelServer, **kwargs: object) -> OpenAIChatModel:
    options: dict[str, object] = {
        "api_key": "sk-test",
        "base_url": server.openai_base_url,
        "timeout": 2.0,
        "retry": RetryPolicy(max_retries=0),
        "http_transport": "aiohttp",
    }
    options.update(kwargs)
    return OpenAIChatModel(**options)  # type: ignore[arg-type]


def test_auto_takes_aiohttp_only_once_loaded_and_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    assert "aiohttp" in sys.modules  # loaded (by the SDK, and by discord.py in the bot)

    assert openai_common.uses_aiohttp("auto")
    assert not openai_common.uses_aiohttp("httpx")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not openai_common.uses_aiohttp("auto")  # httpx speaks every proxy kind
    assert openai_common.uses_aiohttp("aiohttp")


def test_auto_never_imports_aiohttp_itself() -> None:
    """Building the models loads aiohttp only if the SDK had (then it costs nothing more):
    `carrier chat` never pays aiohttp's ~100 ms import on our account."""
    code = (
        "import sys\n"
        "from carrier_cli.llm.openai_chat import OpenAIChatModel\n"
        "from carrier_cli.llm.openai_embeddings import OpenAIEmbedder\n"
        "loaded = 'aiohttp' in sys.modules\n"
        "OpenAIChatModel(api_key='k', base_url='http://127.0.0.1:9/v1')\n"
        "OpenAIEmbedder(api_key='k', base_url='http://127.0.0.1:9/v1')\n"
        "assert ('aiohttp' in sys.modules) == loaded, 'aiohttp imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_forced_aiohttp_still_honours_a_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example:3128")
    model = OpenAIChatModel(
        api_key="k", base_url="https://api.example/v1", http_transport="aiohttp"
    )
    try:
        http = model._client._client
        transport = http._transport_for_url(http.build_request("GET", "https://api.example/v1").url)
        assert isinstance(transport, CarrierAiohttpTransport)
        assert transport.proxy is not None
        assert transport.proxy.url.host == "proxy.example"
    finally:
        await model.aclose()


async def test_connections_are_bounded_and_closed_with_the_model(
    model_server: FakeModelServer,
) -> None:
    model_server.push("hello")
    model = aiohttp_model(model_server)
    await model.complete(MESSAGES, PARAMS)
    transport = model._client._client._transport
    assert isinstance(transport, CarrierAiohttpTransport)
    session = transport.client
    assert isinstance(session, aiohttp.ClientSession)
    assert session.connector is not None
    assert session.connector.limit == 1000  # the SDK's bound, as with httpx's pool
    await model.aclose()
    assert session.closed


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_a_hang_up_before_any_token_is_a_connection_failure_not_a_timeout(
    model_server: FakeModelServer, transport: str
) -> None:
    model_server.push(Reply(text="one two three", disconnect_after=0))
    model = aiohttp_model(model_server, http_transport=transport)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            async for _ in model.stream(MESSAGES, PARAMS):
                pass
    finally:
        await model.aclose()
    assert "(timeout)" not in str(info.value)
    assert "connection to" in str(info.value)
