"""GET /v1/usage: tokens and cost from the usage records (issue 12), as `carrier usage`
reports them, plus the per-day series the console charts.

The records are the `model_calls` rows every process sharing the database writes, so the
answer covers every server and worker, not only this one. Totals are grouped `by`
character or model; `days` are the UTC days from the first to the last with calls (quiet
days as zeros, at most 62), for all calls or those of one `character` or `model`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.errors import InputError

router = APIRouter(prefix="/v1", tags=["usage"])


class UsageRow(BaseModel):
    key: str = Field(description="The character, `provider:model` or day (YYYY-MM-DD).")
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float = Field(description="Over the priced calls only.")
    unpriced_calls: int = Field(description="Calls whose model has no known price.")
    estimated_calls: int = Field(description="Calls whose tokens were counted locally.")


class UsageOut(BaseModel):
    by: Literal["character", "model"]
    since: str | None = None
    character: str | None = None
    model: str | None = None
    rows: list[UsageRow]
    total: UsageRow
    days: list[UsageRow] = Field(description="Per UTC day, oldest first, quiet days as zeros.")


@router.get(
    "/usage",
    response_model=UsageOut,
    summary="Tokens and cost per character or model, and per day",
    description="Scope: read. The usage records of every process sharing the database, as "
    "`carrier usage` reports them. `days` is for all the calls, or those of `character` / "
    "`model` when given.",
)
async def get_usage(
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
    by: Annotated[
        Literal["character", "model"], Query(description="Group the rows by this.")
    ] = "character",
    since: Annotated[
        str | None,
        Query(max_length=40, description="30m, 12h, 1d, 2w or an ISO date or time."),
    ] = None,
    character: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Days of this character.")
    ] = None,
    model: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Days of this `provider:model`."),
    ] = None,
) -> UsageOut:
    from carrier_cli.memory.call_reports import fill_days, parse_since, sum_totals, totals_json

    moment = None
    if since is not None:
        try:
            moment = parse_since(since, flag="since")
        except InputError as exc:
            raise ApiError(
                422, "invalid_request", f"Request field `since`: {exc.message}", hint=exc.hint
            ) from None
        except (OverflowError, ValueError):  # a date at the calendar's edge, out of UTC
            raise ApiError(
                422,
                "invalid_request",
                f"Request field `since`: {since!r} is out of range.",
                hint="Use 30m, 12h, 1d, 2w or an ISO date such as 2026-12-01.",
            ) from None
    store = state_of(request).store
    rows = await store.usage_totals(by=by, since=moment)
    days = await store.usage_totals(by="day", since=moment, character=character, model=model)
    return UsageOut(
        by=by,
        since=moment.isoformat() if moment else None,
        character=character,
        model=model,
        rows=[UsageRow(**totals_json(k, t)) for k, t in rows],
        total=UsageRow(**totals_json("total", sum_totals(rows))),
        days=[UsageRow(**totals_json(k, t)) for k, t in fill_days(days)],
    )
