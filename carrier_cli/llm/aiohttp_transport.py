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

Imported only when the aiohttp transport is chosen (`openai_common.make_client`), and
then aiohttp is loaded already (`import openai` loads it): no import cost of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


class CarrierAiohttpTransport(AiohttpTransport):
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
