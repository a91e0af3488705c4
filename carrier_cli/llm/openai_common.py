"""What the OpenAI chat model and embedder share: the client, retry classification (the
rule itself is `sdk_errors.classify`, shared with Anthropic), and turning SDK exceptions
into Carrier errors the operator can act on."""

from __future__ import annotations

import sys
import urllib.request
from functools import cache
from typing import Any, Literal

import openai

from carrier_cli.errors import CarrierError, RuntimeFailure
from carrier_cli.llm import sdk_errors
from carrier_cli.llm.errors import KeyRejected, PermissionDenied, UnknownModel, provider_label
from carrier_cli.llm.openai_client import CarrierAsyncOpenAI
from carrier_cli.llm.retry import Transient

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


HttpTransport = Literal["auto", "httpx", "aiohttp"]


def make_client(
    api_key: str, base_url: str | None, timeout: float, transport: HttpTransport = "auto"
) -> CarrierAsyncOpenAI:
    """The SDK client with its own retries off: `carrier_cli.llm.retry` does them; its
    requests are built from a template (`openai_client`)."""
    extra: dict[str, Any] = {}
    if uses_aiohttp(transport):
        from carrier_cli.llm.aiohttp_transport import AiohttpClient

        extra["http_client"] = AiohttpClient(timeout=timeout)
    return CarrierAsyncOpenAI(
        api_key=api_key,
        base_url=base_url or DEFAULT_OPENAI_BASE_URL,
        timeout=timeout,
        max_retries=0,
        **extra,
    )


def uses_aiohttp(transport: HttpTransport) -> bool:
    """Whether requests go over aiohttp rather than httpx's own stack (httpcore/anyio/h11).

    aiohttp costs less CPU per request (Discord burst, 1000 turns: 12.79 -> 11.57 ms of bot
    CPU per turn, median of 7 A/B pairs, see `aiohttp_transport`). Its ~100 ms import is
    never ours to pay: `auto` takes it only when it is loaded already, and `import openai`
    (3.57) loads it (the SDK's `_base_client` imports its vendored aiohttp transport), so
    today `auto` means aiohttp wherever aiohttp is installed; an SDK that stopped loading it
    would get httpx back, not an import. `auto` keeps httpx when a proxy is configured in
    the environment (HTTPS_PROXY and the like): httpx speaks SOCKS and HTTPS proxies,
    aiohttp only plain HTTP ones. `aiohttp` forced still honours HTTP proxies from the
    environment.
    """
    if transport == "auto":
        proxies = {scheme for scheme in urllib.request.getproxies() if scheme != "no"}
        return "aiohttp" in sys.modules and not proxies
    return transport == "aiohttp"


def chat_completion_type() -> type[Any]:
    from openai.types.chat import ChatCompletion

    return ChatCompletion


def chunk_stream_type() -> type[Any]:
    from openai.types.chat import ChatCompletionChunk

    return openai.AsyncStream[ChatCompletionChunk]


@cache
def request_options() -> Any:
    """What `chat.completions.create` adds to a request: the SDKs of recent years (3.x here)
    send the API key only to operations marked as bearer-authenticated; older ones know no
    such option."""
    from openai._types import RequestOptions

    if "security" in RequestOptions.__annotations__:
        return {"security": {"bearer_auth": True}}
    return {}


def describe(provider: str, base_url: str | None) -> str:
    return f"{provider_label(provider)} at {(base_url or DEFAULT_OPENAI_BASE_URL).rstrip('/')}"


def classify(exc: BaseException, timeout: float, base_url: str | None) -> Transient | None:
    """429, 5xx, timeouts and connection failures are worth another try; nothing else is."""
    url = (base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
    return sdk_errors.classify(exc, _SDK, timeout=timeout, url=url)


# Error types an error event inside a 200 stream may carry that are worth another try.
_TRANSIENT_ERROR_TYPES = frozenset(
    {"server_error", "api_error", "overloaded_error", "rate_limit_error", "requests", "tokens"}
)


def _stream_error_type(exc: BaseException) -> str | None:
    """An error sent inside a 200 event stream: no status code, only its type (or code)."""
    if isinstance(exc, openai.APIStatusError) or not isinstance(exc, openai.APIError):
        return None
    if exc.type in _TRANSIENT_ERROR_TYPES or exc.code == "rate_limit_exceeded":
        return exc.type or exc.code
    return None


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return sdk_errors.server_detail(message)
    return sdk_errors.server_detail(exc.message)


_SDK = sdk_errors.SdkExceptions.of(
    openai, base=openai.OpenAIError, in_stream=_stream_error_type, detail=_detail
)


def translate(
    exc: BaseException, provider: str, model: str, base_url: str | None
) -> CarrierError | None:
    """A Carrier error for a non-transient SDK exception, or None if it is not one of ours."""
    if isinstance(exc, CarrierError):
        return exc
    url = (base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
    if isinstance(exc, openai.AuthenticationError):
        return KeyRejected(provider, None if base_url is None else url)
    if isinstance(exc, openai.PermissionDeniedError):
        return PermissionDenied(provider, model, _detail(exc))
    if isinstance(exc, openai.NotFoundError):
        if isinstance(exc.body, dict) or exc.code == "model_not_found":
            return UnknownModel(provider, model, url)
        return RuntimeFailure(
            f"{provider_label(provider)}: {url} has no OpenAI-style endpoint here (404).",
            hint="Check the base URL; OpenAI-compatible servers usually serve under /v1.",
        )
    if (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code in (400, 413, 422)
        and exc.code == "model_not_found"
    ):
        return UnknownModel(provider, model, url)
    return sdk_errors.translate_rest(exc, _SDK, provider=provider, model=model, url=url)


def unavailable_hint(provider: str) -> str | None:
    """Extra advice when a local server does not answer (None: the generic advice)."""
    if provider == "ollama":
        return (
            "Is Ollama running? Start it with `ollama serve` (and `ollama pull MODEL`), or "
            "point ollama_base_url / OLLAMA_BASE_URL at it."
        )
    if provider in ("vllm", "lmstudio", "openai-compatible"):
        return "Is the server running? Check openai_base_url / OPENAI_BASE_URL."
    return None
