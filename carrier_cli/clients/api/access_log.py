"""One log line per request: `GET /v1/agents 200 3.1ms key=ci-bot`.

Logger `carrier.api.access` at INFO, written when the response has gone out (or the
connection ended), so the time is the whole request's. It names the key by its *name*
(`-` without one) and never logs the query string, headers or body: a key sent where it
does not belong (`?api_key=...`) must not end up in a log. A path holding something that
looks like a key is masked too. A WebSocket is one line when it closes, with its close
code. Pure ASGI, outside every other middleware, so 413s, 415s and 429s are logged like
any answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from carrier_cli.redact import scrub

log = logging.getLogger("carrier.api.access")

Message = dict[str, Any]
_KEYLIKE = re.compile(r"crr_[A-Za-z0-9_-]{4,}")
_MAX_PATH = 300  # a path is cut there: a log line stays one readable line


def key_name(scope: dict[str, Any]) -> str:
    """The name of the key `auth.require` found for this request, or '-'."""
    info = scope.get("state", {}).get("key")
    name = getattr(info, "name", None)
    return str(name) if name else "-"


def shown_path(path: str) -> str:
    cleaned = scrub(_KEYLIKE.sub("crr_[redacted]", path))
    cleaned = "".join(c if c.isprintable() else "?" for c in cleaned)
    return cleaned if len(cleaned) <= _MAX_PATH else cleaned[:_MAX_PATH] + "…"


class AccessLogMiddleware:
    def __init__(self, app: Any, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            kind_ = message["type"]
            if kind_ == "http.response.start":
                status = int(message["status"])
            elif kind_ == "websocket.accept":
                status = 101
            elif kind_ == "websocket.close":
                status = int(message.get("code", 1000))
            elif kind_ == "websocket.http.response.start":  # refused before the upgrade
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if log.isEnabledFor(logging.INFO):
                method = scope.get("method", "GET") if kind == "http" else "WS"
                ms = (self.clock() - started) * 1000
                shown = status if status is not None else (500 if kind == "http" else 1006)
                log.info(
                    "%s %s %s %.1fms key=%s",
                    method,
                    shown_path(scope.get("path", "")),
                    shown,
                    ms,
                    key_name(scope),
                )
