"""GET /v1/agents/{agent}/rooms and /rooms/{room}/messages: where the agent talks, and what
was said there, from every client (API, Discord, terminal...).

Rooms come newest activity first; room messages come newest first (a chat view loads the
latest page, then older ones). Both pages end with a `next` cursor when more may follow;
pass it back as `cursor` (rooms) or `before` (messages). A message cursor is simply the id
of the last message on the page, and the page after it is found by (time, id), so new
messages arriving between two calls never shift or repeat a page.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.routes.shapes import (
    ROOM_EXAMPLE,
    Message,
    RoomRef,
    find_room,
    message_view,
    parse_memory_id,
    room_view,
)
from carrier_cli.memory.types import MemoryKind, Room

router = APIRouter(prefix="/v1", tags=["rooms"])

MAX_PAGE = 200


class RoomOut(RoomRef):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**ROOM_EXAMPLE, "last_active": "2026-12-03T10:30:00.123456+00:00"}]
        }
    )

    last_active: str | None = Field(None, description="When its newest memory was stored.")


class RoomPage(BaseModel):
    rooms: list[RoomOut]
    next: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


class MessagePage(BaseModel):
    room: RoomRef
    messages: list[Message] = Field(description="Newest first.")
    next: str | None = Field(
        None, description="Pass as `before` for older messages; null when none are left."
    )


def _room_out(room: Room) -> RoomOut:
    when = room.last_active_at.isoformat() if room.last_active_at else None
    return RoomOut(**room_view(room).model_dump(), last_active=when)


def _room_key(room: Room) -> tuple[str, str]:
    # Newest first; ties by id. ISO strings of UTC times sort like the times.
    when = room.last_active_at.isoformat() if room.last_active_at else ""
    return when, str(room.id)


def _encode(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode("|".join(key).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, room_id = raw.partition("|")
        if when:
            datetime.fromisoformat(when)
        uuid.UUID(room_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            422,
            "invalid_request",
            "Request field `cursor`: not a cursor this endpoint gave.",
            hint="Pass the `next` value of the previous page unchanged, or leave it out.",
        ) from None
    return when, room_id


@router.get(
    "/agents/{agent}/rooms",
    response_model=RoomPage,
    summary="The agent's rooms, any client, newest activity first",
    description="Scope: read. Paginated: `limit` rooms, then `next` for the following page.",
    responses={404: {"description": "No such agent"}},
)
async def list_rooms(
    agent: str,
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rooms per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="`next` of a page.")] = None,
) -> RoomPage:
    runtime = state_of(request).agents.get(agent)
    rooms = sorted(await runtime.store.list_rooms(runtime.agent_id), key=_room_key, reverse=True)
    if cursor is not None:
        after = _decode(cursor)
        rooms = [r for r in rooms if _room_key(r) < after]
    page = rooms[:limit]
    more = len(rooms) > limit
    return RoomPage(
        rooms=[_room_out(r) for r in page],
        next=_encode(_room_key(page[-1])) if more and page else None,
    )


@router.get(
    "/agents/{agent}/rooms/{room}/messages",
    response_model=MessagePage,
    summary="A room's messages, newest first",
    description="Scope: read. `{room}` is an API room key (the `room` you sent to) or any "
    "room's id from GET rooms. Pass `next` back as `before` for older messages.",
    responses={404: {"description": "No such agent or room"}},
)
async def room_messages(
    agent: str,
    room: str,
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Messages per page.")] = 50,
    before: Annotated[
        str | None,
        Query(max_length=64, description="A message id: only messages older than it."),
    ] = None,
) -> MessagePage:
    runtime = state_of(request).agents.get(agent)
    found = await find_room(runtime, room)
    after = None
    if before is not None:
        after = await runtime.store.get(parse_memory_id(before, "before"), with_vector=False)
        if after is None or after.room_id != found.id:
            raise ApiError(
                422,
                "invalid_request",
                f"Request field `before`: {before!r} is not a message of this room.",
                hint="Pass the `next` value of the previous page, or a message id of this room.",
            )
    memories = await runtime.store.list(
        agent_id=runtime.agent_id,
        room_id=found.id,
        kinds=[MemoryKind.MESSAGE],
        limit=limit + 1,
        after=after,
    )
    page = memories[:limit]
    return MessagePage(
        room=room_view(found),
        messages=[message_view(m, found, runtime) for m in page],
        next=str(page[-1].id) if len(memories) > limit and page else None,
    )
