"""Which HTTP stack the OpenAI SDK runs on (openai_http_transport), and that the aiohttp
one behaves like httpx's: errors, mid-stream hang-ups, connection bound, proxies, close.
The request/response behaviour itself runs on both in test_openai_chat."""

from __future__ import annotations

import ssl
import subprocess
import sys

import aiohttp
import httpx2
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


class _Request:
    """What aiohttp's connector reads of a request to choose its TLS context."""

    def __init__(self, *, tls: bool, ssl: object = True) -> None:
        self.ssl = ssl
        self._tls = tls

    def is_ssl(self) -> bool:
        return self._tls


def _count_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    built: list[object] = []
    real = httpx2.create_ssl_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext | None:
        context = real(*args, **kwargs)  # type: ignore[arg-type]
        if context is not None:  # (verify=None builds nothing: the deferring transport's)
            built.append(context)
        return context

    monkeypatch.setattr(httpx2, "create_ssl_context", counting)
    return built


async def test_plain_http_never_builds_a_tls_context(
    model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the CA bundle cost 32 ms of `carrier chat`'s start-up; a model server on
    http:// (the fake one here, a local Ollama) never needs it."""
    built = _count_tls_contexts(monkeypatch)
    model_server.push("hello")
    model = aiohttp_model(model_server)
    try:
        assert await model.complete(MESSAGES, PARAMS) == "hello"
    finally:
        await model.aclose()
    assert built == []


async def test_tls_gets_httpx_verified_context_once_at_the_first_tls_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _count_tls_contexts(monkeypatch)
    transport = CarrierAiohttpTransport()
    assert built == []
    session = transport.get_client()
    try:
        connector = session.connector
        assert connector is not None
        assert connector._get_ssl_context(_Request(tls=False)) is None  # type: ignore[attr-defined]
        assert built == []
        context = connector._get_ssl_context(_Request(tls=True))  # type: ignore[attr-defined]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        reference = httpx2.create_ssl_context()
        assert context.cert_store_stats() == reference.cert_store_stats()
        assert context is transport.ssl_context  # built once, then kept
        assert connector._get_ssl_context(_Request(tls=True)) is context  # type: ignore[attr-defined]
        assert len(built) == 2  # this transport's one, and the reference above
        # A request that chose its own TLS (ssl=False: unverified) keeps aiohttp's rule.
        unverified = connector._get_ssl_context(_Request(tls=True, ssl=False))  # type: ignore[attr-defined]
        assert unverified is not context and unverified.verify_mode == ssl.CERT_NONE
    finally:
        await session.close()


@pytest.mark.filterwarnings("ignore:`cert=...` is deprecated:DeprecationWarning")
def test_a_callers_own_verify_is_applied_at_construction_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _count_tls_contexts(monkeypatch)
    transport = CarrierAiohttpTransport(verify=False)
    assert len(built) == 1
    assert transport.ssl_context.verify_mode == ssl.CERT_NONE
    with pytest.raises(OSError):
        CarrierAiohttpTransport(verify=True, cert="/nonexistent/cert.pem")
