"""One error shape for every failure: `{"error": {"code", "message", "hint"}}`.

Routes raise `ApiError`; Carrier's own errors map by kind (bad input 400, a model or
database that failed 502/503); FastAPI's validation errors become 422 naming the request
field; anything unexpected is logged with its traceback and answered 500 `internal` with
no detail, so a stack or a secret never reaches a response body.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import CarrierError, InputError
from carrier_cli.redact import scrub

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

log = logging.getLogger("carrier.api")


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
        fields = [
            {"field": _field_path(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()[:20]
        ]
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
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        code = codes.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else "HTTP error"
        if exc.status_code == 404:
            message = f"No such endpoint: {request.method} {request.url.path}."
        return JSONResponse(
            error_body(code, message, "See /docs for the endpoints."),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        from fastapi.responses import JSONResponse

        from carrier_cli.clients.api.outages import database_outage

        outage = database_outage(exc)
        if outage is not None:  # the database is down: 503, and one line in the log
            log.warning("%s %s: database unreachable: %s", request.method, request.url.path, exc)
            return error_response(outage)
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

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(CarrierError, on_carrier_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
