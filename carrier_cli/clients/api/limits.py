"""What a request may cost: its body's size and type, and how many a key may send.

`LimitsMiddleware` (pure ASGI, so a body is never buffered to be measured) refuses a body
over `ApiOptions.max_body_bytes` with 413 `too_large`: at once when Content-Length says
so, and while it streams when it does not (chunked), so a body without a length is never
read without bound. Uploads under `/v1/instagram/posts` get `max_upload_bytes` instead.
It also answers 415 `unsupported_media_type` for a POST/PUT/PATCH body that is not JSON,
before any route reads it: every route gets the check for free, and a route whose body is
a form (FastAPI `Form`/`File` parameters), or one under `MULTIPART_PATHS`, accepts
multipart too. A request for no route passes through untouched, so it still gets its
404 or 405.

`RateLimiter` is a token bucket per key name: `rate_limit` requests per minute with a
burst of the same size, O(1) per request and at most `max_keys` buckets (the least
recently seen is forgotten first; forgetting only ever gives a key a full bucket back).
It lives in this process; with `redis_url` set, `carrier serve` replaces it with
`cluster.rate_limit.RedisRateLimiter`, the same bucket kept in Redis, so several servers
share each key's budget. `auth.require()` awaits `acheck(name)`; the decision is kept on
the request's state and this middleware puts its `RateLimit-*` headers on every response,
successes included.

`AuthFailures` bounds what wrong keys cost: a key check that fails may have run scrypt
(~50 ms of CPU), so each client address gets `per_minute` failures before its key checks
are refused with 429 without hashing, and at most `HASH_CONCURRENCY` unknown keys are
hashed at once. Behind a proxy every client shares the proxy's address (X-Forwarded-For
is not trusted), so a flood through it slows the proxy's other users' *new* keys only:
keys this process has verified before skip the gate.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import params
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from carrier_cli.clients.api.errors import ApiError, error_body
from carrier_cli.clients.api.openapi import api_routes

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

UPLOAD_PATHS = ("/v1/instagram/posts",)  # bodies here get max_upload_bytes
MULTIPART_PATHS = ("/v1/instagram/posts",)  # multipart/form-data accepted here too
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON = "application/json"
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_KEYS = 10_000  # buckets tracked per limiter
HASH_CONCURRENCY = 2  # unknown keys hashed at once (each scrypt is ~50 ms of a CPU)
STATE_DECISION = "rate_limit"  # where require() leaves the decision, on request.state


# ---------------------------------------------------------------------- rate limits
@dataclass(frozen=True)
class Decision:
    """One rate-limit check: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until the next request would be allowed (0: now)

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter:
    """A token bucket per name: `per_minute` tokens, refilled continuously. 0: off."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def _tokens(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - at) * self.rate)

    def _store(self, name: str, tokens: float, now: float) -> None:
        self._buckets[name] = (tokens, now)
        self._buckets.move_to_end(name)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def _decision(self, allowed: bool, tokens: float) -> Decision:
        missing = self.per_minute - tokens
        return Decision(
            allowed=allowed,
            limit=self.per_minute,
            remaining=max(0, math.floor(tokens)),
            reset=max(0, math.ceil(missing / self.rate)),
            retry_after=0 if allowed else max(1, math.ceil((1 - tokens) / self.rate)),
        )

    def peek(self, name: str) -> Decision:
        """Whether `name` has a token left, without taking it."""
        if not self.enabled:
            return Decision(True, 0, 0, 0, 0)
        tokens = self._tokens(name, self.clock())
        return self._decision(tokens >= 1, tokens)

    def take(self, name: str) -> Decision:
        """Take one token for `name` when there is one."""
        if not self.enabled:
            return Decision(True, 0, 0, 0, 0)
        now = self.clock()
        tokens = self._tokens(name, now)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._store(name, tokens, now)
        return self._decision(allowed, tokens)

    def check(self, name: str) -> Decision:
        """A request by key `name`: its decision, or ApiError 429 with Retry-After."""
        return self.verdict(name, self.take(name))

    async def acheck(self, name: str) -> Decision:
        """`check` as auth.require() calls it: awaited, so the limiter shared through
        Redis (cluster/rate_limit.py) can stand in for this one."""
        return self.check(name)

    def verdict(self, name: str, decision: Decision) -> Decision:
        if not decision.allowed:
            raise rate_limited(
                decision,
                f"The key {name!r} sent more than {self.per_minute} requests in a minute.",
                "Wait Retry-After seconds; the limit is the api_rate_limit setting.",
            )
        return decision

    def __len__(self) -> int:
        return len(self._buckets)


def rate_limited(decision: Decision, message: str, hint: str) -> ApiError:
    return ApiError(429, "rate_limited", message, hint=hint, headers=decision.headers())


class AuthFailures:
    """Failed key checks per client address, and a bound on concurrent hashing."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = RateLimiter(per_minute, clock=clock)
        self._hashing: asyncio.Semaphore | None = None

    @property
    def hashing(self) -> asyncio.Semaphore:
        if self._hashing is None:  # made in the server's event loop, on first use
            self._hashing = asyncio.Semaphore(HASH_CONCURRENCY)
        return self._hashing

    def refuse_if_blocked(self, client: str) -> None:
        decision = self.limiter.peek(client)
        if not decision.allowed:
            raise rate_limited(
                decision,
                f"Too many requests with a wrong API key from {client}.",
                "Wait Retry-After seconds and send a valid key (`carrier api-keys list` "
                "shows the keys there are).",
            )

    def failed(self, client: str) -> None:
        self.limiter.take(client)


# ---------------------------------------------------------------------- bodies
class BodyTooLarge(HTTPException):
    """Raised into the app when a streamed body passes the limit (the 413 is already
    sent by then); starlette's HTTPException so FastAPI's body parsing passes it on
    rather than calling it a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Content Too Large")


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind == _JSON or (kind.startswith("application/") and kind.endswith("+json"))


class LimitsMiddleware:
    """413 for bodies over the limit, 415 for bodies that are not JSON, and the
    RateLimit headers of the request's decision on its response."""

    def __init__(self, app: Any, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, path: str) -> tuple[int, str]:
        if path.startswith(UPLOAD_PATHS):
            return self.max_upload_bytes, "api_max_upload_bytes"
        return self.max_body_bytes, "api_max_body_bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        limit, setting = self.limit_for(scope["path"])
        length_text = headers.get("content-length")
        length: int | None = None
        if length_text is not None:
            if not length_text.isdigit():
                await _reply(send, 400, "bad_request", "Content-Length is not a number.", None)
                return
            length = int(length_text)
            if length > limit:
                await _reply_too_large(send, limit, setting)
                return
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if scope["method"] in _BODY_METHODS and (chunked or (length or 0) > 0):
            refusal = self.media_refusal(scope, headers.get("content-type"))
            if refusal is not None:
                await _reply(send, 415, "unsupported_media_type", *refusal)
                return
        await self._run(scope, receive, send, limit, setting)

    def media_refusal(self, scope: Scope, content_type: str | None) -> tuple[str, str] | None:
        """(message, hint) when the body's type is not one the route reads."""
        route = _route_for(scope)
        if route is None:  # no such endpoint: the router answers 404 or 405
            return None
        kind = media_type(content_type)
        if is_json(kind):
            return None
        accepts_forms = scope["path"].startswith(MULTIPART_PATHS) or route.reads_form
        if accepts_forms and kind in _FORMS:
            return None
        shown = f"Content-Type {kind!r}" if kind else "A body without a Content-Type"
        wanted = "application/json or multipart/form-data" if accepts_forms else _JSON
        return (
            f"{shown} is not accepted by {scope['method']} {scope['path']}; it takes {wanted}.",
            f"Send the body as JSON with the header `Content-Type: {_JSON}` "
            "(curl: -H 'Content-Type: application/json').",
        )

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str
    ) -> None:
        received = 0
        started = False
        replied = False  # our 413 went out: whatever the app sends after is dropped

        async def counted() -> Message:
            nonlocal received, replied
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not replied:
                        replied = True
                        await _reply_too_large(send, limit, setting)
                    raise BodyTooLarge()
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if replied:
                return
            if message["type"] == "http.response.start":
                started = True
                decision = scope.get("state", {}).get(STATE_DECISION)
                if isinstance(decision, Decision) and decision.limit:
                    present = {bytes(k).lower() for k, _ in message.get("headers", [])}
                    if b"ratelimit-limit" not in present:
                        extra = [
                            (k.lower().encode("latin-1"), v.encode("latin-1"))
                            for k, v in decision.headers().items()
                        ]
                        message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:
            if not replied:
                raise
        except BaseExceptionGroup as group:
            _, rest = group.split(BodyTooLarge)
            if rest is not None or not replied:
                raise


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = bytes(key).decode("latin-1").lower()
        text = bytes(value).decode("latin-1")
        out[name] = f"{out[name]}, {text}" if name in out else text
    return out


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    reads_form: bool


def _route_table(app: Any) -> list[_Route]:
    """The app's routes as (path pattern, methods, whether the body is a form), built
    once per app: the routes are fixed once it serves."""
    table: list[_Route] | None = getattr(app.state, "carrier_route_table", None)
    if table is None:
        table = []
        for route in api_routes(app):
            pattern, _, _ = compile_path(route.path_format)
            field = route.body_field
            form = field is not None and isinstance(field.field_info, params.Form)
            table.append(_Route(pattern, frozenset(route.methods or ()), form))
        app.state.carrier_route_table = table
    return table


def _route_for(scope: Scope) -> _Route | None:
    """The route that will answer this request (path and method), or None."""
    app = scope.get("app")
    if app is None or not hasattr(app, "state"):
        return None
    path, method = scope["path"], scope["method"]
    for route in _route_table(app):
        if method in route.methods and route.pattern.match(path):
            return route
    return None


async def _reply(send: Send, status: int, code: str, message: str, hint: str | None) -> None:
    import json

    body = json.dumps(error_body(code, message, hint)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _reply_too_large(send: Send, limit: int, setting: str) -> None:
    await _reply(
        send,
        413,
        "too_large",
        f"The request body is larger than {limit:,} bytes, the most this endpoint reads.",
        f"Send a smaller body, or raise the {setting} setting on the server.",
    )
