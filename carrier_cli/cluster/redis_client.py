"""The one way Carrier opens Redis: `await connect(url)`, checked with a PING, or a
RuntimeFailure naming the (masked) URL and what to do.

redis-py's asyncio client keeps a pool per `Redis` object; one per process is shared by
every user (events, queue, caches, locks). Timeouts are bounded so an unreachable Redis
is an error in seconds, not a hang; `health_check_interval` makes a connection idle
behind a NAT or a restarted server notice before it is used.
"""

from __future__ import annotations

from typing import Any

from carrier_cli.errors import RuntimeFailure
from carrier_cli.redact import scrub

CONNECT_TIMEOUT = 5.0  # seconds to open a connection
MAX_CONNECTIONS = 64  # per process: bounded, like the database pool


def masked(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "redis://…"
    if parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{host}{port}")
    return urlunsplit(parts)


def client(url: str) -> Any:
    """A `redis.asyncio.Redis` for `url` (no I/O yet)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:  # pragma: no cover - a dependency of Carrier
        raise RuntimeFailure(
            "redis_url is set but the redis package is not installed.",
            hint="Reinstall Carrier (`pip install carrier-cli`), which depends on redis.",
        ) from None
    return aioredis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=15,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
        retry_on_timeout=True,
    )


async def connect(url: str) -> Any:
    """A connected client, or a RuntimeFailure (exit 1) naming the URL without secrets."""
    redis = client(url)
    try:
        await redis.ping()
    except Exception as exc:
        await redis.aclose()
        raise RuntimeFailure(
            f"Could not reach Redis at {masked(url)} ({type(exc).__name__}: "
            f"{scrub(str(exc))[:200]}).",
            hint="Start Redis (e.g. `redis-server`), check REDIS_URL / redis_url, or unset "
            "it to run a single process without Redis.",
        ) from None
    return redis
