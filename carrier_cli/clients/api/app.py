"""The FastAPI application: routes, the error shape, CORS, limits and the request log.

`create_app(state)` is the library entry point (a test or an embedding program can mount
it under its own server); `server.py` runs it under uvicorn for `carrier serve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli.clients.api import errors, openapi

if TYPE_CHECKING:
    from fastapi import FastAPI

    from carrier_cli.clients.api.state import ApiState

API_VERSION = "1"

DESCRIPTION = """\
Talk to Carrier characters from other software. Every endpoint but `/healthz` and
`/readyz` needs an API key: `Authorization: Bearer KEY` (or `X-API-Key: KEY`); create one
with `carrier api-keys create NAME --scope chat|read|admin`. Errors always have the shape
`{"error": {"code", "message", "hint"}}`.
"""


def create_app(state: ApiState) -> FastAPI:
    from fastapi import FastAPI

    from carrier_cli.clients.api.access_log import AccessLogMiddleware
    from carrier_cli.clients.api.limits import AuthFailures, LimitsMiddleware, RateLimiter
    from carrier_cli.clients.api.routes import routers

    app = FastAPI(
        title="Carrier API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url=None,  # routes/docs.py serves Swagger UI from the package, not a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    # errors._slash_twin answers a trailing-slash miss instead, with a body and a
    # relative Location (Starlette's redirect has neither).
    app.router.redirect_slashes = False
    app.state.carrier = state
    options = state.options
    state.extras.setdefault("rate_limiter", RateLimiter(options.rate_limit))
    state.extras.setdefault("auth_failures", AuthFailures(options.auth_failure_limit))
    errors.install(app)
    # add_middleware wraps: the last added is outermost. From outside in: the access
    # log (every answer, preflights included), CORS (so a browser can read even the
    # limits' own 413/415), the limits.
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=options.max_body_bytes,
        max_upload_bytes=options.max_upload_bytes,
    )
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            # a browser app may read these only when they are exposed
            expose_headers=[
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    app.add_middleware(AccessLogMiddleware)
    for router in routers():
        app.include_router(router)
    openapi.install(app)
    return app
