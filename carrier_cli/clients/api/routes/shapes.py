"""Response shapes several resources share: a room reference and a stored message.

A message has one shape everywhere it leaves the process (REST room history, the reply of
POST messages, WebSocket frames, webhook bodies): `runtime.events.message_data`'s
`message`. The models here describe that dict for OpenAPI; they are filled from it, never
built field by field a second time. Not a router module (routes/__init__.py lists those).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from carrier_cli.clients.api.errors import ApiError
from carrier_cli.memory.types import Memory, Room
from carrier_cli.runtime.events import message_data, room_ref

ROOM_EXAMPLE: dict[str, Any] = {
    "id": "0b4e5b0e-2f5c-5d43-9a4e-6c1d9c1f2b7a",
    "key": "r1",
    "source": "api",
    "name": None,
}


class RoomRef(BaseModel):
    """How a room is named: its memory id, the client's own key and the client (source)."""

    model_config = ConfigDict(json_schema_extra={"examples": [ROOM_EXAMPLE]})

    id: str = Field(description="The room's id (a uuid); usable wherever `{room}` is asked.")
    key: str = Field(description="The client's key for it: the API's `room`, a channel id...")
    source: str = Field(description="The client it belongs to: api, discord, terminal...")
    name: str | None = Field(None, description="A display name, when the client has one.")


class MessageSender(BaseModel):
    id: str | None = Field(None, description="The sender's entity id (a uuid).")
    key: str | None = Field(None, description="The client's id of the sender (`sender.id`).")
    name: str | None = None
    agent: bool = Field(description="Whether the agent itself wrote it.")


class Message(BaseModel):
    """A stored message: the same object REST, WebSocket frames and webhooks carry."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5a0c8f4e-3f0b-5a8e-8d0e-9a3f5e6b7c21",
                    "text": "Hello Ada!",
                    "sender": {
                        "id": "2d9c1f0e-6b7a-5c4d-8e3f-1a2b3c4d5e6f",
                        "key": None,
                        "name": "Carrier",
                        "agent": True,
                    },
                    "source": "api",
                    "actions": ["REPLY"],
                    "in_reply_to": "9e8d7c6b-5a4f-5e3d-8c2b-1a0f9e8d7c6b",
                    "attachments": [],
                    "created": "2026-12-03T10:30:00.123456+00:00",
                }
            ]
        }
    )

    id: str
    text: str
    sender: MessageSender
    source: str | None = None
    actions: list[str] = []
    in_reply_to: str | None = Field(None, description="The message this one answers.")
    attachments: list[dict[str, Any]] = []
    created: str | None = Field(None, description="When it was stored (ISO 8601, UTC).")


def room_view(room: Room) -> RoomRef:
    return RoomRef(**room_ref(room))


def message_view(memory: Memory, room: Room, runtime: Any) -> Message:
    data = message_data(
        memory, room, runtime.character.name, from_agent=memory.entity_id == runtime.agent_id
    )
    return Message.model_validate(data["message"])


async def find_room(runtime: Any, ref: str) -> Room:
    """`{room}` in a path: a room id (any client's room, e.g. a Discord channel listed by
    GET rooms) or an API room key ("r1"). 404 when the agent has no such room."""
    store = runtime.store
    room: Room | None = None
    try:
        as_id = uuid.UUID(ref)
    except ValueError:
        as_id = None
    if as_id is not None:
        room = await store.get_room(as_id)
    if room is None:
        room = await store.find_room(runtime.agent_id, "api", ref)
    if room is None or room.agent_id != runtime.agent_id:
        raise ApiError(
            404,
            "not_found",
            f"{runtime.character.name} has no room {ref!r}.",
            hint="Give an API room key (the `room` you sent messages to) or a room id from "
            f"GET /v1/agents/{runtime.character.name}/rooms.",
        )
    return room


def parse_memory_id(value: str, field: str) -> uuid.UUID:
    """A full memory id from a query or path parameter, or a 422 naming the field."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(
            422,
            "invalid_request",
            f"Request field `{field}`: {value[:60]!r} is not a memory id (a uuid).",
            hint="Pass the `id` of a memory (or the `next` cursor of the previous page).",
        ) from None


async def agent_memory(runtime: Any, value: str, field: str) -> Memory | None:
    """The memory of this runtime's agent whose id is `value` (a 422 naming `field` when
    it is no uuid), or None when there is none: each caller words its own 404 or 422."""
    memory = await runtime.store.get(parse_memory_id(value, field), with_vector=False)
    if memory is None or memory.agent_id != runtime.agent_id:
        return None
    return memory  # type: ignore[no-any-return]
