"""GET /v1/instagram/queue (scheduled and drafted posts), POST /v1/instagram/posts/{id}/
approve|reject.

The queue has its own path: GET /v1/instagram/posts is the journal (every post, as
`carrier instagram history`), whose states are the pipeline's, not the schedule's.

The schedule is the one `carrier instagram queue` shows (clients/instagram/schedule.py);
an approved draft is due at once (or at its --at time) and the server's scheduler, or any
`carrier run --client instagram` on the same database, publishes it exactly once.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from carrier_cli.clients.api.auth import require
from carrier_cli.clients.api.errors import ApiError, not_found
from carrier_cli.clients.api.routes.instagram import MAX_POST_ID, poster_of
from carrier_cli.errors import InputError
from carrier_cli.redact import scrub

router = APIRouter(prefix="/v1/instagram", tags=["instagram"])

State = Literal[
    "draft", "approved", "rejected", "queued", "claimed", "published", "failed", "cancelled"
]
PostIdParam = Annotated[int, PathParam(ge=1, le=MAX_POST_ID, description="The journal id.")]


class QueuedPost(BaseModel):
    post_id: int
    state: str = Field(
        description="draft (waiting for approval), approved, queued (due at scheduled_at), "
        "claimed (being published), published, failed (see reason), rejected, cancelled."
    )
    scheduled_at: datetime | None = Field(
        None, description="When it goes out (UTC); null: when approved."
    )
    tz: str | None = Field(None, description="The zone its time was given in.")
    kind: str
    caption: str
    media: list[str] = Field(description="The file names.")
    character: str | None = None
    prompt: str | None = Field(None, description="What the character was asked for the caption.")
    reason: str | None = Field(None, description="Why it was rejected, or its last failure.")
    attempts: int
    step: str = Field(description="The last completed pipeline step.")
    media_id: str | None = None
    permalink: str | None = None


class QueueList(BaseModel):
    posts: list[QueuedPost]


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000, description="Why, kept with the post.")


def _shape(item: Any) -> QueuedPost:
    e, r = item.entry, item.record
    return QueuedPost(
        post_id=e.post_id,
        state=e.state,
        scheduled_at=e.scheduled_at,
        tz=e.tz,
        kind=r.kind,
        caption=r.caption,
        media=[Path(str(i.get("source"))).name for i in r.items],
        character=r.character,
        prompt=e.prompt,
        reason=scrub(e.reason) if e.reason else None,
        attempts=e.attempts,
        step=r.last_step,
        media_id=r.media_id,
        permalink=r.permalink,
    )


@router.get(
    "/queue",
    response_model=QueueList,
    summary="Scheduled and drafted posts (as `carrier instagram queue list`)",
)
async def list_queue(
    request: Request,
    status: Annotated[
        State | None,
        Query(description="Only posts in this state; default: draft, approved, queued, claimed."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many.")] = 50,
    _: Any = Depends(require("read")),
) -> QueueList:
    from carrier_cli.clients.instagram.queueing import items_in
    from carrier_cli.clients.instagram.schedule import OPEN_STATES

    poster = poster_of(request)
    found = await items_in(poster.journal, (status,) if status else OPEN_STATES, limit=limit)
    return QueueList(posts=[_shape(i) for i in found])


_DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such scheduled or drafted post"},
    409: {"description": "The post is not a draft (already decided, published...)"},
}


async def _decide(request: Request, post_id: int, decision: str, reason: str | None) -> QueuedPost:
    from carrier_cli.clients.instagram.queueing import decide_in
    from carrier_cli.clients.instagram.schedule import Schedule

    poster = poster_of(request)
    if await Schedule(poster.journal).get(post_id) is None:
        raise not_found(
            f"Scheduled or drafted Instagram post {post_id}",
            hint="GET /v1/instagram/queue?status=draft lists the drafts.",
        )
    try:
        item = await decide_in(poster.journal, post_id, decision, reason)
    except InputError as exc:
        raise ApiError(409, "conflict", exc.message, hint=exc.hint) from None
    return _shape(item)


@router.post(
    "/posts/{post_id}/approve",
    response_model=QueuedPost,
    summary="Approve a drafted post: it goes out when due",
    responses=_DECISION_RESPONSES,
)
async def approve_post(
    post_id: PostIdParam, request: Request, _: Any = Depends(require("admin"))
) -> QueuedPost:
    return await _decide(request, post_id, "approve", None)


@router.post(
    "/posts/{post_id}/reject",
    response_model=QueuedPost,
    summary="Reject a drafted post: it is never published",
    responses=_DECISION_RESPONSES,
)
async def reject_post(
    post_id: PostIdParam,
    request: Request,
    body: Annotated[Rejection | None, Body()] = None,
    _: Any = Depends(require("admin")),
) -> QueuedPost:
    return await _decide(request, post_id, "reject", body.reason if body else None)
