"""Intake: store the incoming message with its room, entity and participant.

One store call (`MemoryStore.record_message`): the store owns the bounded cache of rooms,
senders and participations it has already written, and writes whatever is missing in one
transaction, so a message from a known sender in a known room costs only its own insert.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from carrier_cli.memory.types import Arrival
from carrier_cli.runtime import attachments
from carrier_cli.runtime.turn.ids import message_id
from carrier_cli.runtime.turn.state import Intake
from carrier_cli.runtime.types import IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore


def arrival(message: IncomingMessage, agent_id: uuid.UUID) -> Arrival:
    """What the store records of an incoming message."""
    content: dict[str, Any] = {
        "text": message.text,
        "source": message.source,
        "name": message.sender_name,
    }
    if message.attachments:  # descriptions and metadata, never the bytes or the text
        content["attachments"] = attachments.stored(message.attachments)
    metadata: dict[str, Any] = {"room_key": message.room_key, "sender_key": message.sender_key}
    if message.message_key:
        metadata["message_key"] = message.message_key
    return Arrival(
        source=message.source,
        room_key=message.room_key,
        room_name=message.room_name,
        sender_key=message.sender_key,
        sender_name=message.sender_name,
        memory_id=message_id(message, agent_id),
        content=content,
        metadata=metadata,
    )


async def intake(
    store: MemoryStore,
    agent_id: uuid.UUID,
    message: IncomingMessage,
    room_message_counts: dict[uuid.UUID, int],
) -> Intake:
    """Store the message (with its embedding) and count it in its room, unless it is a
    replay of a platform message stored before."""
    recorded = await store.record_message(
        agent_id, arrival(message, agent_id), embed=bool(message.text.strip())
    )
    # Without a platform message id every message is new (its id is random), whatever
    # the store found: only a replayed platform event is "seen before".
    seen = recorded.seen_before and message.message_key is not None
    room = recorded.room
    if not seen:
        room_message_counts[room.id] = room_message_counts.get(room.id, 0) + 1
    return Intake(room, recorded.entity, recorded.memory, seen_before=seen)
