"""Intake: store the incoming message with its room, entity and participant.

`intake()` is the whole stage, in one function, so that the three store trips it makes
today (room and entity together, the participant, the message) can become one store call.
The caches of rooms, entities and participants live here until then.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room
from carrier_cli.runtime.turn.ids import message_id
from carrier_cli.runtime.turn.state import Intake
from carrier_cli.runtime.types import IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore

CACHE_LIMIT = 10_000  # entries per cache; past it the cache starts over


@dataclass
class IntakeCache:
    """Rooms and entities by platform key, and the participants known to exist."""

    rooms: dict[tuple[str, str], Room] = field(default_factory=dict)
    # The name is kept with the entity: a changed display name is written through.
    entities: dict[tuple[str, str], tuple[str, Entity]] = field(default_factory=dict)
    participants: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    async def room(self, store: MemoryStore, agent_id: uuid.UUID, message: IncomingMessage) -> Room:
        key = (message.source, message.room_key)
        room = self.rooms.get(key)
        if room is None:
            room = await store.ensure_room(
                agent_id, message.source, message.room_key, message.room_name
            )
            if len(self.rooms) > CACHE_LIMIT:
                self.rooms.clear()
            self.rooms[key] = room
        return room

    async def entity(self, store: MemoryStore, message: IncomingMessage) -> Entity:
        key = (message.source, message.sender_key)
        cached = self.entities.get(key)
        if cached is None or cached[0] != message.sender_name:
            entity = await store.ensure_entity(
                message.source, message.sender_key, message.sender_name
            )
            if len(self.entities) > CACHE_LIMIT:
                self.entities.clear()
            self.entities[key] = (message.sender_name, entity)
            return entity
        return cached[1]


async def intake(
    store: MemoryStore,
    agent_id: uuid.UUID,
    message: IncomingMessage,
    cache: IntakeCache,
    room_message_counts: dict[uuid.UUID, int],
) -> Intake:
    """Store the message (with its embedding) and count it in its room, unless it is a
    replay of a platform message stored before."""
    room, entity = await asyncio.gather(
        cache.room(store, agent_id, message), cache.entity(store, message)
    )
    if (room.id, entity.id) not in cache.participants:
        await store.ensure_participant(room.id, entity.id)
        cache.participants.add((room.id, entity.id))
    content: dict[str, Any] = {
        "text": message.text,
        "source": message.source,
        "name": message.sender_name,
    }
    if message.attachments:
        content["attachments"] = message.attachments
    metadata: dict[str, Any] = {"room_key": message.room_key, "sender_key": message.sender_key}
    if message.message_key:
        metadata["message_key"] = message.message_key
    memory = Memory(
        agent_id=agent_id,
        content=content,
        kind=MemoryKind.MESSAGE,
        room_id=room.id,
        entity_id=entity.id,
        id=message_id(message, agent_id),
        metadata=metadata,
    )
    stored = await store.add(memory, embed=bool(message.text.strip()), dedupe=True)
    # add() is idempotent on the id and hands back the row already stored for a replayed
    # id (a different object), saving a separate existence query on the hot path.
    seen = stored is not memory and message.message_key is not None
    if not seen:
        room_message_counts[room.id] = room_message_counts.get(room.id, 0) + 1
    return Intake(room, entity, stored, seen_before=seen)
