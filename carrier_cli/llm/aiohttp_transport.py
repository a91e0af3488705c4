"""The OpenAI SDK's aiohttp transport with httpx's error classes kept.

Why aiohttp: in the Discord bot (which loads aiohttp anyway, for discord.py) the model
request's HTTP stack under the SDK (httpcore, anyio, h11, sniffio) was the largest piece of
per-turn CPU left. bench/discord_bench.py, 100 channels x 10 messages, 7 alternating
pairs (load average 2-16): bot CPU per turn, median 12.79 ms on httpx -> 11.57 ms on
aiohttp, aiohttp lower in every pair (by 0.17 to 2.33 ms, median 1.22 ms).

Why a subclass: the vendored transport maps every `aiohttp.ClientConnectionError` to
`httpx.ConnectTimeout`, so a refused connection or a server hanging up would read as "no
answer within 60 s (timeout)" and not "connection to URL failed: ConnectError" as with
httpx. Here the aiohttp cause decides, as httpcore would have said it.

Why a deferred TLS context: the vendored transport builds httpx's verified SSL context in
its constructor, and loading the CA bundle into it (`load_verify_locations`) took 32 ms of
CPU, the largest single piece of `carrier chat`'s start-up outside imports (cProfile of a
piped start with every module imported beforehand: 32 of ~100 ms). A model server on
http:// (a local Ollama, LM Studio, vLLM, the benches' fake server) never needs it. Here
the same context (httpx's, from the same verify/cert/trust_env) is built at the first TLS
connection instead, so https pays the same once and plain http not at all.

Imported only when the aiohttp transport is chosen (`openai_common.make_client`), and
then aiohttp is loaded already (`import openai` loads it): no import cost of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx2
from openai import DefaultAioHttpClient
from openai._vendor.httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport


def httpx_error(exc: httpx2.TransportError) -> httpx2.TransportError:
    """The httpx exception httpcore would have raised for the aiohttp cause of `exc`."""
    cause = exc.__cause__
    if isinstance(cause, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return exc  # a timeout: the vendored mapping (ReadTimeout, ConnectTimeout) is right
    message = str(exc)
    mapped: httpx2.TransportError
    if isinstance(cause, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)):
        mapped = httpx2.ProxyError(message)
    elif isinstance(cause, aiohttp.ClientConnectorError):
        mapped = httpx2.ConnectError(message)
    elif isinstance(cause, aiohttp.ServerDisconnectedError):
        mapped = httpx2.RemoteProtocolError(message)
    elif isinstance(cause, aiohttp.ClientConnectionError):
        mapped = httpx2.ReadError(message)
    else:
        return exc
    mapped.__cause__ = cause
    return mapped


class _Stream(httpx2.AsyncByteStream):
    """The response body, with the same error classes as the request itself."""

    def __init__(self, inner: AiohttpResponseStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx2.TransportError as exc:
            raise httpx_error(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DeferredTLSConnector(aiohttp.TCPConnector):
    """aiohttp's connector with the verified TLS context asked of `tls` at the first
    connection that verifies TLS, not passed in built: what the stock connector given that
    context as `ssl=` would use for the same request (aiohttp's own rules still decide a
    request with its own `ssl=` or an unverified one)."""

    def __init__(self, *, tls: Callable[[], ssl.SSLContext], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls = tls

    def _get_ssl_context(self, req: Any) -> ssl.SSLContext | None:
        if req.is_ssl() and req.ssl is True:
            return self._tls()
        return super()._get_ssl_context(req)  # type: ignore[no-any-return]


class CarrierAiohttpTransport(AiohttpTransport):
    """See the module docstring: httpx error classes, and the TLS context built at the
    first TLS connection."""

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        **kwargs: Any,
    ) -> None:
        # The base would build the context here; with verify=None it builds none (httpx's
        # create_ssl_context returns a non-bool, non-str `verify` as the context).
        super().__init__(verify=None, cert=None, trust_env=trust_env, **kwargs)  # type: ignore[arg-type]
        self._tls_options = (verify, cert, trust_env)
        self._tls_context: ssl.SSLContext | None = None
        if verify is not True or cert is not None:
            self.ssl_context  # noqa: B018 - a caller's own verify/cert fails here, as before

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """httpx's SSL context for this transport's verify/cert/trust_env, built once."""
        if self._tls_context is None:
            verify, cert, trust_env = self._tls_options
            self._tls_context = httpx2.create_ssl_context(
                verify=verify, cert=cert, trust_env=trust_env
            )
        return self._tls_context

    @ssl_context.setter
    def ssl_context(self, value: ssl.SSLContext | None) -> None:
        if value is not None:  # the base's constructor sets None (see __init__)
            self._tls_context = value

    def get_client(self) -> aiohttp.ClientSession:
        if self.client is not None or self.uds:
            return super().get_client()  # type: ignore[no-any-return]
        # The base's session, over a connector that asks for the context when it needs it.
        limit = self.limits.max_connections
        connector = _DeferredTLSConnector(
            tls=lambda: self.ssl_context,
            keepalive_timeout=self.limits.keepalive_expiry,
            local_addr=(self.local_address, 0) if self.local_address else None,
            **({"limit": limit} if limit is not None else {}),
        )
        return aiohttp.ClientSession(connector=connector)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx2.TransportError as exc:
            raise httpx_error(exc) from exc.__cause__
        inner = response.stream
        if isinstance(inner, AiohttpResponseStream):
            response.stream = _Stream(inner)
        return response


class AiohttpClient(DefaultAioHttpClient):  # type: ignore[misc,valid-type]
    """The SDK's aiohttp client (its defaults: timeout, 1000 connections, redirects) over
    `CarrierAiohttpTransport`."""

    def _init_transport(self, **kwargs: Any) -> httpx2.AsyncBaseTransport:  # type: ignore[override]
        transport = kwargs.pop("transport", None)
        if transport is not None:
            return transport  # type: ignore[no-any-return]
        return CarrierAiohttpTransport(**kwargs)

    def _init_proxy_transport(self, proxy: httpx2.Proxy, **kwargs: Any) -> Any:  # type: ignore[override]
        return CarrierAiohttpTransport(proxy=proxy, **kwargs)
