"""Rooms as WebSocket frames name them, and the replay of a room's missed messages.

A frame's `room` is an API room key ("r1": the room REST and WebSocket messages with that
key share) or a room id (a uuid: a room of any source, e.g. a Discord channel's, as GET
/v1/agents/{agent}/rooms lists them). Replay (`subscribe` with `since`): the room's
messages stored after the `since` message, from memory, at most REPLAY_LIMIT of them; if
more were missed the `replayed` frame says so (`truncated`), and the client can page back
with GET /v1/agents/{agent}/rooms/{room}/messages.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.api.hub import Delivery
from carrier_cli.clients.api.ws_frames import FrameError
from carrier_cli.memory.types import Memory, MemoryKind, Room, stable_id
from carrier_cli.runtime.events import AgentEvent, message_data, room_ref

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.agent import AgentRuntime

REPLAY_LIMIT = 200  # messages replayed per subscribe; more: `truncated` in `replayed`
API_SOURCE = "api"


def api_room(runtime: AgentRuntime, key: str) -> Room:
    """The API room with this key, as the runtime will store it (it may not exist yet)."""
    room_id = stable_id(API_SOURCE, "room", key, runtime.agent_id)
    return Room(id=room_id, agent_id=runtime.agent_id, source=API_SOURCE, external_id=key)


async def resolve_room(
    store: MemoryStore, runtime: AgentRuntime, ref: str, *, create: bool
) -> Room:
    """The room a frame names. A uuid is a room id first; an unknown one is an API room
    key only if such a room exists, or when `create` (a message starts the room)."""
    try:
        room_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        room_id = None
    if room_id is not None:
        room = await store.get_room(room_id)
        if room is not None and room.agent_id == runtime.agent_id:
            return room
        existing = await store.find_room(runtime.agent_id, API_SOURCE, ref)
        if existing is not None:
            return existing
        if not create:
            raise FrameError(
                "not_found",
                f"Room {ref} is not a room of {runtime.character.name}.",
                field="room",
                hint=f"GET /v1/agents/{runtime.character.name}/rooms lists the room ids; or "
                "use an API room key such as r1.",
            )
        return api_room(runtime, ref)
    found = await store.find_room(runtime.agent_id, API_SOURCE, ref)
    return found or api_room(runtime, ref)


async def since_message(store: MemoryStore, room: Room, since: str) -> Memory:
    """The message a `since` cursor names, which must be a message of `room`."""
    try:
        memory_id = uuid.UUID(since)
    except ValueError:
        raise FrameError(
            "invalid_frame",
            "Frame field `since`: not an event id (a message.created id is a uuid).",
            field="since",
            hint="Pass the `id` of the last message.created event you saw, or leave it out.",
        ) from None
    memory = await store.get(memory_id, with_vector=False)
    if memory is None or memory.room_id != room.id or memory.kind != MemoryKind.MESSAGE:
        raise FrameError(
            "not_found",
            f"`since` {since} is not a message of this room.",
            field="since",
            hint="Pass the `id` of a message.created event of this room, or subscribe "
            "without `since`.",
        )
    return memory


def message_delivery(runtime: AgentRuntime, room: Room, memory: Memory) -> Delivery:
    """A stored message as the `message.created` event the runtime published for it."""
    name = runtime.character.name
    data = message_data(memory, room, name, from_agent=memory.entity_id == runtime.agent_id)
    event = AgentEvent(
        "message.created",
        runtime.agent_id,
        name,
        data,
        room_id=room.id,
        id=str(memory.id),
        created=memory.created_at or datetime.now(UTC),
    )
    return Delivery(event)


async def replay(
    store: MemoryStore, runtime: AgentRuntime, room: Room, since: Memory
) -> tuple[list[dict[str, Any]], set[str]]:
    """The frames replaying what came after `since` (then one `replayed` frame), and the
    message ids replayed (the writer drops their live copies)."""
    recent = await store.recent(room.id, REPLAY_LIMIT + 1)
    ids = [m.id for m in recent]
    if since.id in ids:
        missed = recent[ids.index(since.id) + 1 :]
        truncated = False
    else:  # more than REPLAY_LIMIT came after it: the newest REPLAY_LIMIT
        missed = recent[-REPLAY_LIMIT:]
        truncated = True
    frames = []
    for memory in missed:
        frame = message_delivery(runtime, room, memory).frame()
        frame["replay"] = True
        frames.append(frame)
    done: dict[str, Any] = {
        "type": "replayed",
        "agent": runtime.character.name,
        "room": str(room.id),
        "since": str(since.id),
        "count": len(frames),
        "truncated": truncated,
    }
    if truncated:
        done["message"] = (
            f"More than {REPLAY_LIMIT} messages came after `since`; only the newest "
            f"{REPLAY_LIMIT} were replayed. Page back with GET /v1/agents/"
            f"{runtime.character.name}/rooms/{room.id}/messages."
        )
    frames.append(done)
    return frames, {str(m.id) for m in missed}


def subscribed_frame(runtime: AgentRuntime, room: Room, since: str | None) -> dict[str, Any]:
    return {
        "type": "subscribed",
        "agent": runtime.character.name,
        "agent_id": str(runtime.agent_id),
        "room": room_ref(room),
        "since": since,
    }
