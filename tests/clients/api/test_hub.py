"""The WebSocket hub in-process: routing, bounds and the bus subscription it holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from carrier_cli.clients.api.hub import (
    MAX_SUBSCRIPTIONS,
    QUEUE_SIZE,
    Connection,
    Delivery,
    Hub,
    Outbound,
)
from carrier_cli.runtime.events import AgentEvent, EventBus


@dataclass
class Agent:
    """What the hub reads of a runtime: its id and its event bus (a real EventBus)."""

    agent_id: uuid.UUID = field(default_factory=uuid.uuid4)
    events: EventBus = field(default_factory=EventBus)


def event(agent: Agent, room: uuid.UUID, kind: str = "typing", **data: object) -> AgentEvent:
    return AgentEvent(kind, agent.agent_id, "Carrier", dict(data), room_id=room)


def drain(conn: Connection) -> list[Outbound]:
    queue = conn.queue
    out: list[Outbound] = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def test_events_reach_the_rooms_followers_and_the_turns_owner() -> None:
    hub, agent = Hub(), Agent()
    room, other_room = uuid.uuid4(), uuid.uuid4()
    follower, owner, elsewhere = (hub.connect(n) for n in ("a", "b", "c"))
    assert follower and owner and elsewhere
    hub.subscribe(follower, agent, room)
    hub.subscribe(elsewhere, agent, other_room)
    hub.watch_turn(owner, agent, "m-1", "client-7")

    agent.events.publish(event(agent, room, "reply.token", in_reply_to="m-1", text="hi"))
    agent.events.publish(event(agent, room, "typing", state="start"))

    to_follower = drain(follower)
    assert all(isinstance(d, Delivery) and not d.own for d in to_follower)
    assert [d.event.type for d in to_follower if isinstance(d, Delivery)] == [
        "reply.token",
        "typing",
    ]
    to_owner = drain(owner)
    assert len(to_owner) == 1  # its turn's token, not the room's typing
    assert isinstance(to_owner[0], Delivery)
    frame = to_owner[0].frame()
    assert frame["client_id"] == "client-7" and frame["room"] == str(room)
    assert drain(elsewhere) == []


async def test_a_full_queue_marks_the_connection_and_never_blocks_the_bus() -> None:
    hub, agent, room = Hub(), Agent(), uuid.uuid4()
    slow, fine = hub.connect("slow"), hub.connect("fine")
    assert slow and fine
    hub.subscribe(slow, agent, room)
    hub.subscribe(fine, agent, room)
    for _ in range(QUEUE_SIZE + 10):
        agent.events.publish(event(agent, room))
        drain(fine)  # this one keeps up
    assert slow.overflowed.is_set() and not fine.overflowed.is_set()
    assert slow.queue.qsize() == QUEUE_SIZE and slow.dropped == 10


async def test_the_bus_is_followed_only_while_someone_needs_the_agent() -> None:
    hub, agent, room = Hub(), Agent(), uuid.uuid4()
    conn = hub.connect("a")
    assert conn is not None and not agent.events.active
    hub.subscribe(conn, agent, room)
    hub.subscribe(conn, agent, room)  # again: no second hold
    hub.watch_turn(conn, agent, "m", None)
    assert agent.events.active
    hub.unwatch_turn(conn, "m")
    assert agent.events.active
    hub.disconnect(conn)
    assert not agent.events.active and not hub.connections


async def test_subscriptions_and_connections_are_bounded() -> None:
    hub, agent = Hub(max_connections=2), Agent()
    conn = hub.connect("a")
    assert conn is not None and hub.connect("b") is not None
    assert hub.connect("c") is None
    for _ in range(MAX_SUBSCRIPTIONS):
        assert hub.subscribe(conn, agent, uuid.uuid4())
    assert not hub.subscribe(conn, agent, uuid.uuid4())
    hub.disconnect(conn)
    assert hub.connect("c") is not None
