"""Fan-out of the runtimes' events (runtime/events.py) to WebSocket connections.

Each connection subscribes to (agent, room) pairs; the hub listens on a runtime's
`EventBus` only while some connection needs that agent, so a server without WebSocket
clients builds no events. The bus calls `_on_event` synchronously inside the turn, so it
only does `put_nowait` on the connection's bounded queue: a connection whose queue is full
(a client that stopped reading while its TCP buffers filled up) is marked `overflowed` and
its session closes it with `CLOSE_SLOW_CONSUMER`. The server never buffers without bound
and a slow client never slows a turn down.

The bounds are constants rather than settings (nobody has needed to tune them):
`QUEUE_SIZE` events per connection, `MAX_SUBSCRIPTIONS` rooms per connection,
`MAX_CONNECTIONS` connections per process and `MAX_TURNS` turns in flight per connection.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from carrier_cli.runtime.events import AgentEvent, EventBus

log = logging.getLogger("carrier.api.ws")

QUEUE_SIZE = 256  # frames waiting for one connection's writer; past it: slow consumer
MAX_SUBSCRIPTIONS = 32  # rooms one connection follows at once
MAX_CONNECTIONS = 1024  # open WebSocket connections per process
MAX_TURNS = 2  # `message` frames one connection has in flight at once

RoomKey = tuple[uuid.UUID, uuid.UUID]  # (agent id, room id)


class EventSource(Protocol):
    """What the hub reads of a runtime (an AgentRuntime is one)."""

    @property
    def agent_id(self) -> uuid.UUID: ...
    @property
    def events(self) -> EventBus: ...


@dataclass(frozen=True)
class Delivery:
    """An event for one connection; `client_id` when it belongs to that connection's own
    `message` (so the client can match the reply to what it sent)."""

    event: AgentEvent
    client_id: str | None = None
    own: bool = False

    def frame(self) -> dict[str, Any]:
        """The wire frame: the event's envelope plus the agent and room it is about."""
        frame = self.event.envelope()
        frame["agent"] = self.event.agent
        frame["agent_id"] = str(self.event.agent_id)
        if self.event.room_id is not None:
            frame["room"] = str(self.event.room_id)
        if self.own:
            frame["client_id"] = self.client_id
        if self.event.type == "reply.completed":
            frame["data"] = with_file_urls(frame["data"], self.event.agent_id)
        return frame


def with_file_urls(data: dict[str, Any], agent_id: Any) -> dict[str, Any]:
    """reply.completed's files, each with the `url` to download it from (the runtime that
    published the event names files by id only: it knows nothing of the API's paths).
    A copy: the event's data is shared by every connection and the webhooks."""
    reply = data.get("reply")
    if not isinstance(reply, dict) or not reply.get("files"):
        return data
    from carrier_cli.clients.api.routes.files import file_url

    files = [{**f, "url": file_url(agent_id, f["id"])} for f in reply["files"]]
    return {**data, "reply": {**reply, "files": files}}


@dataclass(frozen=True)
class Replay:
    """Missed messages of a room, read by the connection's writer at its place in the
    queue: everything published after the subscription is queued behind it, so the replay
    comes before those live events and the writer drops the live copies it replayed."""

    room: RoomKey
    run: Callable[[], Awaitable[tuple[list[dict[str, Any]], set[str]]]]


Outbound = Delivery | Replay | dict[str, Any]


@dataclass(eq=False)
class Connection:
    """One WebSocket's side of the hub: its queue and what it follows."""

    key_name: str
    queue: asyncio.Queue[Outbound] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    rooms: set[RoomKey] = field(default_factory=set)
    turns: dict[str, tuple[uuid.UUID, str | None]] = field(default_factory=dict)
    replayed: dict[RoomKey, set[str]] = field(default_factory=dict)
    dropped: int = 0

    def offer(self, item: Outbound) -> bool:
        """Queue `item` without waiting; False (and the connection marked overflowed)
        when the queue is full or was full before."""
        if self.overflowed.is_set():
            self.dropped += 1
            return False
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self.overflowed.set()
            return False
        return True

    def is_duplicate(self, delivery: Delivery) -> bool:
        """A live `message.created` already sent by a replay of its room."""
        event = delivery.event
        if event.type != "message.created" or event.room_id is None:
            return False
        seen = self.replayed.get((event.agent_id, event.room_id))
        return seen is not None and event.id in seen


def turn_of(event: AgentEvent) -> str | None:
    """The incoming message an event belongs to (its memory id), if any."""
    data = event.data
    if event.type == "message.created":
        message = data.get("message") or {}
        return str(message.get("in_reply_to") or event.id)
    value = data.get("in_reply_to") or data.get("message_id")
    return str(value) if value else None


class Hub:
    """Routes every event to the connections subscribed to its room, and a turn's events
    to the connection that sent its message."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self._rooms: dict[RoomKey, set[Connection]] = {}
        self._turns: dict[str, Connection] = {}
        self._buses: dict[uuid.UUID, tuple[Callable[[], None], int]] = {}

    # -- connections -------------------------------------------------------------------------
    def connect(self, key_name: str) -> Connection | None:
        """A new connection, or None when MAX_CONNECTIONS are open."""
        if len(self.connections) >= self.max_connections:
            return None
        conn = Connection(key_name)
        self.connections.add(conn)
        return conn

    def disconnect(self, conn: Connection) -> None:
        for room in list(conn.rooms):
            self.unsubscribe(conn, room)
        for memory_id in list(conn.turns):
            self.unwatch_turn(conn, memory_id)
        self.connections.discard(conn)

    # -- rooms -------------------------------------------------------------------------------
    def subscribe(self, conn: Connection, runtime: EventSource, room_id: uuid.UUID) -> bool:
        """Follow a room; False when the connection already follows MAX_SUBSCRIPTIONS."""
        room = (runtime.agent_id, room_id)
        if room in conn.rooms:
            return True
        if len(conn.rooms) >= MAX_SUBSCRIPTIONS:
            return False
        self._retain(runtime)
        conn.rooms.add(room)
        self._rooms.setdefault(room, set()).add(conn)
        return True

    def unsubscribe(self, conn: Connection, room: RoomKey) -> bool:
        if room not in conn.rooms:
            return False
        conn.rooms.discard(room)
        conn.replayed.pop(room, None)
        followers = self._rooms.get(room)
        if followers is not None:
            followers.discard(conn)
            if not followers:
                del self._rooms[room]
        self._release(room[0])
        return True

    # -- a connection's own turns ------------------------------------------------------------
    def watch_turn(
        self, conn: Connection, runtime: EventSource, memory_id: str, client_id: str | None
    ) -> None:
        """Send the events of the turn answering `memory_id` to `conn`, subscribed or not."""
        self._retain(runtime)
        conn.turns[memory_id] = (runtime.agent_id, client_id)
        self._turns[memory_id] = conn

    def unwatch_turn(self, conn: Connection, memory_id: str) -> None:
        watched = conn.turns.pop(memory_id, None)
        if watched is None:
            return
        if self._turns.get(memory_id) is conn:
            del self._turns[memory_id]
        self._release(watched[0])

    # -- the bus -----------------------------------------------------------------------------
    def _retain(self, runtime: EventSource) -> None:
        held = self._buses.get(runtime.agent_id)
        if held is None:
            self._buses[runtime.agent_id] = (runtime.events.subscribe(self._on_event), 1)
        else:
            self._buses[runtime.agent_id] = (held[0], held[1] + 1)

    def _release(self, agent_id: uuid.UUID) -> None:
        held = self._buses.get(agent_id)
        if held is None:
            return
        if held[1] <= 1:
            held[0]()
            del self._buses[agent_id]
        else:
            self._buses[agent_id] = (held[0], held[1] - 1)

    def listening(self, agent_id: uuid.UUID) -> bool:
        return agent_id in self._buses

    def publish(self, event: AgentEvent) -> None:
        """Route an event that did not come from a local bus: another process's, relayed
        over Redis (cluster/event_relay.py). Same routing, same bounded queues."""
        self._on_event(event)

    def _on_event(self, event: AgentEvent) -> None:
        """The bus callback: only put_nowait, never a wait."""
        followers = self._rooms.get((event.agent_id, event.room_id), ()) if event.room_id else ()
        turn = turn_of(event)
        owner = self._turns.get(turn) if turn is not None else None
        client_id = owner.turns[turn][1] if owner is not None and turn is not None else None
        for conn in list(followers):
            conn.offer(Delivery(event, client_id, own=conn is owner))
        if owner is not None and owner not in followers:
            owner.offer(Delivery(event, client_id, own=True))
