"""What happens in an agent's rooms, as events anyone in the process can follow.

The runtime publishes an `AgentEvent` when a message is stored in a room (the incoming one,
the reply, an action's output), for each reply delta of a streamed turn, when it starts and
stops generating (typing) and when a turn fails. The API's WebSocket fans them out to its
subscribers, webhooks turn some of them into deliveries, and a library caller can follow
them with `runtime.events.subscribe(callback)`.

Callbacks run synchronously inside the turn, so they must be quick and must not block:
put the event on a bounded queue and return. A callback that raises is logged and kept;
it never fails the turn. Nothing here is durable: a subscriber that is not listening misses
the event (the WebSocket replays a room's missed *messages* from memory, and webhooks keep
their own outbox written with the message, see memory/outbox.py).

Event ids: a `message.created` event's id is the stored memory's id, so a client that saw
it can ask for what came after it (`since`); other events get a random id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from carrier_cli.memory.types import Memory, Room

log = logging.getLogger("carrier.events")

EventType = Literal[
    "message.created", "reply.token", "reply.completed", "typing", "agent.error", "budget.reached"
]
EVENT_TYPES: tuple[str, ...] = (
    "message.created",
    "reply.token",
    "reply.completed",
    "typing",
    "agent.error",
    "budget.reached",
)


@dataclass(frozen=True)
class AgentEvent:
    """One thing that happened. `data` is JSON-ready (strings, numbers, lists, dicts)."""

    type: str
    agent_id: uuid.UUID
    agent: str  # the character's name
    data: dict[str, Any]
    room_id: uuid.UUID | None = None  # None for events of the agent as a whole
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def envelope(self) -> dict[str, Any]:
        """The wire shape shared by WebSocket frames and webhook bodies."""
        return {
            "id": self.id,
            "type": self.type,
            "created": self.created.isoformat(),
            "data": self.data,
        }


EventCallback = Callable[[AgentEvent], None]


class EventBus:
    """Synchronous fan-out to the process's subscribers; one per runtime."""

    def __init__(self) -> None:
        self._subscribers: list[EventCallback] = []

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Add `callback`; returns a function that removes it again."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether anyone listens (the runtime skips building events when nobody does)."""
        return bool(self._subscribers)

    def publish(self, event: AgentEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:  # a subscriber's bug must not fail the turn
                log.warning("event subscriber %r failed on %s: %s", callback, event.type, exc)


def room_ref(room: Room) -> dict[str, Any]:
    """How events name a room: its memory id, and the client's own key and source."""
    return {"id": str(room.id), "key": room.external_id, "source": room.source, "name": room.name}


def message_data(memory: Memory, room: Room, agent: str, *, from_agent: bool) -> dict[str, Any]:
    """The `data` of a `message.created` event (and the message objects of the API)."""
    content = memory.content
    return {
        "agent": agent,
        "room": room_ref(room),
        "message": {
            "id": str(memory.id),
            "text": content.get("text", ""),
            "sender": {
                "id": str(memory.entity_id) if memory.entity_id else None,
                "key": (memory.metadata or {}).get("sender_key"),
                "name": content.get("name"),
                "agent": from_agent,
            },
            "source": content.get("source"),
            "actions": list(content.get("actions") or []),
            "in_reply_to": content.get("in_reply_to"),
            "attachments": list(content.get("attachments") or []),
            "created": memory.created_at.isoformat() if memory.created_at else None,
        },
    }
