"""Who is calling: the API key a request carries, and what its scope allows.

A key comes as `Authorization: Bearer KEY` or `X-API-Key: KEY`, never in the URL (a key
in a query string ends up in proxy logs and browser history, so one there is refused
with 401 even if it is valid). Scopes: read (GET), chat (read + messages), admin
(everything). No key or a wrong one: 401 with `WWW-Authenticate`; a key without the scope:
403. The hash comparison is constant-time (auth/keys.py).

Checking a key this process has not verified before runs scrypt (~50 ms of CPU), so those
checks go through `limits.AuthFailures`: a client address that keeps sending wrong keys is
answered 429 without hashing, and only a few are hashed at once. Then the key's rate limit
(`limits.RateLimiter`, per key name) is taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from carrier_cli.auth.keys import KeyInfo, allows, key_prefix
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.limits import STATE_DECISION, AuthFailures
from carrier_cli.clients.api.openapi import SCOPE_ATTRIBUTE

if TYPE_CHECKING:
    from carrier_cli.clients.api.state import ApiState

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="carrier"'}
_QUERY_NAMES = ("key", "api_key", "apikey", "token", "access_token")


def state_of(request: Any) -> ApiState:
    state: ApiState = request.app.state.carrier
    return state


def presented_key(headers: Any) -> str | None:
    """The key in `Authorization: Bearer` or `X-API-Key`, or None."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return str(token.strip())
    value = headers.get("x-api-key")
    return str(value).strip() if value and value.strip() else None


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message,
        hint="Send `Authorization: Bearer KEY` (or `X-API-Key: KEY`); create a key with "
        "`carrier api-keys create NAME`.",
        headers=_CHALLENGE,
    )


def client_address(scope: Any) -> str:
    client = scope.get("client") if hasattr(scope, "get") else None
    return str(client[0]) if client else "-"


async def authenticate(
    state: ApiState, headers: Any, query: Any, client: str = "-"
) -> KeyInfo | None:
    """The caller's key (None with --no-auth), or ApiError 401 (429 for a client
    address that sent too many wrong keys)."""
    if any(name in query for name in _QUERY_NAMES):
        raise unauthorized("API keys are not accepted in the URL.")
    if state.keys is None:
        return None
    raw = presented_key(headers)
    if raw is None:
        raise unauthorized("This endpoint needs an API key.")
    failures = state.extras.get("auth_failures")
    if key_prefix(raw) is None or not isinstance(failures, AuthFailures):
        info = await state.keys.authenticate(raw)  # malformed: refused without hashing
    elif state.keys.remembered(raw):
        info = await state.keys.authenticate(raw)
    else:
        failures.refuse_if_blocked(client)
        async with failures.hashing:
            failures.refuse_if_blocked(client)  # others from there may have failed meanwhile
            info = await state.keys.authenticate(raw)
        if info is None:
            failures.failed(client)
    if info is None:
        raise unauthorized("The API key is not valid (wrong, or revoked).")
    return info


def check_scope(info: KeyInfo | None, needed: str) -> None:
    if info is None:  # --no-auth
        return
    if not allows(info.scope, needed):
        raise ApiError(
            403,
            "forbidden",
            f"The key {info.name!r} has scope {info.scope!r}; this needs {needed!r}.",
            hint=f"Use a key with scope {needed} or admin "
            f"(`carrier api-keys create NAME --scope {needed}`).",
        )


def require(needed: str) -> Any:
    """A FastAPI dependency: the request's key, which must allow `needed`. The key is
    put on `request.state.key` for the access log, the rate limiter's decision on
    `request.state.rate_limit` for the RateLimit headers (limits.LimitsMiddleware); the
    OpenAPI reads the scope from the function (openapi.py)."""

    async def dependency(request: Request) -> KeyInfo | None:
        state = state_of(request)
        info = await authenticate(
            state, request.headers, request.query_params, client_address(request.scope)
        )
        request.state.key = info
        limiter = state.extras.get("rate_limiter")
        if limiter is not None:
            try:
                setattr(request.state, STATE_DECISION, await limiter.acheck(_limit_name(info)))
            except ApiError:
                setattr(request.state, STATE_DECISION, None)
                raise
        check_scope(info, needed)
        return info

    setattr(dependency, SCOPE_ATTRIBUTE, needed)
    return dependency


def _limit_name(info: KeyInfo | None) -> str:
    return info.name if info is not None else "-"  # --no-auth: one bucket for everyone
