"""/healthz (the process answers) and /readyz (the database answers and every agent has
a model configured): the only endpoints without a key, for load balancers and
orchestrators. Neither says more than ok/not ok and which check failed. A probe may come
every second, so /readyz costs one `SELECT 1`-like ping (MemoryStore.ping), bounded by
PING_TIMEOUT so an unreachable database host answers 503 rather than hanging the probe."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from carrier_cli.clients.api.auth import state_of

router = APIRouter(tags=["health"])
log = logging.getLogger("carrier.api")
PING_TIMEOUT = 3.0


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: database reachable, models configured",
    responses={503: {"model": Health, "description": "A check failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.store.ping(), PING_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # any failure is "not ready"; the reason goes to the log only
        log.warning("/readyz: the database did not answer: %s", exc)
        checks["database"] = "unreachable"
    models = [r.model_config.large for r in state.agents]
    checks["models"] = "ok" if models and all(models) else "not configured"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
