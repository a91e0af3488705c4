"""One POST to a receiver, classified: delivered, worth retrying, or failed for good.

Shared by the sender and `carrier webhooks test`. The host is checked (webhooks.ssrf)
before connecting, and aiohttp connects through the checking resolver; redirects are
never followed (a 3xx is a failure naming its status). Errors are scrubbed and bounded:
the secret and the signature never appear in them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from carrier_cli.webhooks import ssrf

RETRY_STATUSES = frozenset({408, 429})
_ERROR_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the HTTP status, None when no response came
    ms: float
    delivered: bool
    retry: bool  # a timeout, a connection error, 5xx, 408 or 429
    error: str | None = None
    retry_after: float | None = None  # seconds, from a 429/503's Retry-After


def classify(status: int) -> tuple[bool, bool]:
    """(delivered, retry) for an HTTP status."""
    if 200 <= status < 300:
        return True, False
    return False, status >= 500 or status in RETRY_STATUSES


def _clean(text: str) -> str:
    from carrier_cli.memory.urls import mask_url
    from carrier_cli.redact import scrub

    text = " ".join(scrub(text).split())
    words = [mask_url(w) if "://" in w else w for w in text.split(" ")]
    return " ".join(words)[:_ERROR_CHARS]


def session(*, allow_private: bool, concurrency: int) -> Any:
    """An aiohttp session whose connections go only to checked addresses."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        resolver=ssrf.CheckedResolver(allow_private=allow_private),  # type: ignore[arg-type]
        limit=concurrency,
        use_dns_cache=False,  # each connection is resolved (and checked) afresh
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)


async def post(
    client: Any,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
) -> Outcome:
    """POST once. A refused address raises ssrf.RefusedAddress (never worth a retry)."""
    import aiohttp

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    began = perf_counter()
    try:
        # aiohttp does not ask the resolver about an IP literal: check every host here too.
        await ssrf.resolve(host, port, allow_private=allow_private)
        async with client.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            await response.content.read(4096)  # a little of the answer; the rest is dropped
            status = int(response.status)
            retry_after = _retry_after(response.headers.get("Retry-After"))
    except ssrf.RefusedAddress:
        raise
    except TimeoutError:
        ms = (perf_counter() - began) * 1000
        return Outcome(None, ms, False, True, f"timed out after {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        ms = (perf_counter() - began) * 1000
        return Outcome(None, ms, False, True, _clean(f"{type(exc).__name__}: {exc}"))
    ms = (perf_counter() - began) * 1000
    delivered, retry = classify(status)
    error = None
    if not delivered:
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (a redirect: not followed, so the receiver's URL needs fixing)"
    return Outcome(status, ms, delivered, retry, error, retry_after)


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
