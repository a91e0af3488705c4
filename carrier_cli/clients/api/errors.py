"""One error shape for every failure: `{"error": {"code", "message", "hint"}}`.

Routes raise `ApiError`; Carrier's own errors map by kind (bad input 400, a model or
database that failed 502/503); FastAPI's validation errors become 422 naming the request
field; anything unexpected is logged with its traceback and answered 500 `internal` with
no detail, so a stack or a secret never reaches a response body.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from carrier_cli.errors import CarrierError, InputError
from carrier_cli.redact import scrub

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

log = logging.getLogger("carrier.api")


class FieldError(BaseModel):
    field: str = Field(description="The request field, dotted (e.g. `sender.id`, `query.limit`).")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Machine-readable: unauthorized, forbidden, not_found, invalid_request, "
        "too_large, unsupported_media_type, rate_limited, unavailable, upstream_failed, moved "
        "(307: the path with or without its trailing slash), ...",
        examples=["not_found"],
    )
    message: str = Field(description="One paragraph for a person.")
    hint: str | None = Field(None, description="What to do about it.")
    fields: list[FieldError] | None = Field(None, description="422: every field that failed.")


class ErrorBody(BaseModel):
    """Every answer that is not a success has this body (the OpenAPI documents it)."""

    error: ErrorDetail


# What each status means here, for the OpenAPI's response descriptions.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request",
    401: "No API key, or a wrong or revoked one",
    403: "The key's scope does not allow this",
    404: "No such resource",
    405: "Method not allowed on this path",
    409: "Conflict",
    413: "Request body too large",
    415: "Request body is not JSON",
    422: "A request field is invalid (`fields` names each)",
    429: "Rate limited (see Retry-After)",
    500: "Server failure (no detail is returned; it is logged)",
    502: "A model or service behind the API failed",
    503: "Temporarily unavailable (database or model)",
}


class ApiError(Exception):
    """An answer that is not a success: status, machine-readable code, one paragraph."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.headers = headers or {}


def not_found(what: str, hint: str | None = None) -> ApiError:
    return ApiError(404, "not_found", f"{what} was not found.", hint=hint)


def error_body(code: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": scrub(message)}
    if hint:
        error["hint"] = scrub(hint)
    error.update(extra)
    return {"error": error}


def error_response(error: ApiError) -> JSONResponse:
    from fastapi.responses import JSONResponse

    return JSONResponse(
        error_body(error.code, error.message, error.hint),
        status_code=error.status,
        headers=error.headers,
    )


def from_carrier_error(exc: CarrierError) -> ApiError:
    """Carrier's own errors: bad input is the caller's (400); a failed service is a bad
    gateway (502) unless it says it is temporarily unavailable."""
    if isinstance(exc, InputError):
        return ApiError(400, "bad_request", exc.message, hint=exc.hint)
    status = 503 if getattr(exc, "unavailable", False) else 502
    code = "unavailable" if status == 503 else "upstream_failed"
    return ApiError(status, code, exc.message, hint=exc.hint)


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else []
    return ".".join(parts) or "body"


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as {field, message}; a body that is not JSON at all names
    `body` and where the parse stopped (FastAPI puts the character offset in `loc`)."""
    if error.get("type") == "json_invalid":
        loc = error.get("loc", ())
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = (error.get("ctx") or {}).get("error") or "invalid"
        return {"field": "body", "message": f"is not valid JSON{where} ({reason})"}
    return {"field": _field_path(error.get("loc", ())), "message": str(error.get("msg", ""))}


def _slash_twin(request: Request) -> JSONResponse | None:
    """A 307 to the same path without (or with) its trailing slash when that one is an
    endpoint, with the error shape's body. Starlette's own redirect (turned off in
    create_app) answers with an empty body, which a client that does not follow redirects
    (httpx's default, most SDK generators') reports as an unreadable 307; its Location is
    also absolute from the Host header, wrong behind a proxy that rewrites it. This one is
    relative (RFC 9110 allows it) and says what happened."""
    from fastapi.responses import JSONResponse
    from starlette.routing import Match

    path = request.url.path
    if path == "/" or request.scope.get("type") != "http":
        return None
    twin = path.rstrip("/") if path.endswith("/") else path + "/"
    if not twin:
        return None
    scope = {**request.scope, "path": twin}
    router = request.app.router
    if not any(route.matches(scope)[0] is not Match.NONE for route in router.routes):
        return None
    location = twin + (f"?{request.url.query}" if request.url.query else "")
    return JSONResponse(
        error_body(
            "moved",
            f"{request.method} {path} is not an endpoint; {twin} is.",
            f"Send the request to {twin}; clients that follow redirects are sent there"
            " (307 keeps the method and the body).",
        ),
        status_code=307,
        headers={"Location": location},
    )


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_carrier_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CarrierError)
        return error_response(from_carrier_error(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        from fastapi.responses import JSONResponse

        assert isinstance(exc, RequestValidationError)
        fields = [_field_error(e) for e in exc.errors()[:20]]
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        message = f"Request field `{first['field']}`: {first['message']}."
        body = error_body(
            "invalid_request",
            message,
            "Fix the field named and send the request again; /docs shows every field.",
            fields=fields,
        )
        return JSONResponse(body, status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        from fastapi.responses import JSONResponse

        assert isinstance(exc, HTTPException)
        codes = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
            415: "unsupported_media_type",
        }
        code = codes.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else "HTTP error"
        if exc.status_code == 404 and (moved := _slash_twin(request)) is not None:
            return moved
        if exc.status_code == 404:
            message = f"No such endpoint: {request.method} {request.url.path}."
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or "other methods"
            message = f"{request.method} is not allowed on {request.url.path}; it takes {allowed}."
        return JSONResponse(
            error_body(code, message, "See /docs for the endpoints."),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        from fastapi.responses import JSONResponse

        log.error(
            "%s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
        )
        return JSONResponse(
            error_body(
                "internal",
                "The server failed on this request.",
                "It is logged on the server; try again, and report it if it repeats.",
            ),
            status_code=500,
        )

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        # The storage layer names most failures (CarrierError, above); a connection that
        # cannot even be opened (server gone, database dropped) can arrive raw.
        log.warning(
            "%s %s: the database did not answer (%s)",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return error_response(
            ApiError(
                503,
                "unavailable",
                "The database did not answer; the request was not carried out.",
                hint="Try again shortly; the server's operator can check the database "
                "(GET /readyz says whether it is back).",
            )
        )

    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app.add_exception_handler(DBAPIError, on_database_down)
    app.add_exception_handler(PoolTimeout, on_database_down)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(CarrierError, on_carrier_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
