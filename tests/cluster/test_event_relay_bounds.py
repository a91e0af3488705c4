"""The relay in one process, against a real redis-server: two EventRelays (two "processes",
each with its own origin and client) over real EventBuses. What the two-server test cannot
show cheaply: a turn never waits for Redis (publishing while Redis is down returns at
once), the outgoing queue is bounded and its drops are counted with a rate-limited
warning, a process ignores its own events, and both relays recover after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carrier_cli.cluster import event_relay
from carrier_cli.cluster.event_relay import EventRelay
from carrier_cli.cluster.redis_client import connect
from carrier_cli.runtime.events import AgentEvent, EventBus
from tests.support.redis_server import RedisServer, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.service]


@dataclass
class FakeRuntime:
    """What the relay reads of a runtime: its agent id and its (real) bus."""

    agent_id: uuid.UUID
    events: EventBus = field(default_factory=EventBus)


@dataclass
class Pair:
    redis: RedisServer
    sender: EventRelay
    receiver: EventRelay
    bus: EventBus
    got: list[AgentEvent]
    agent: uuid.UUID


async def wait_until(predicate: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def event(agent: uuid.UUID, n: int) -> AgentEvent:
    return AgentEvent("reply.token", agent, "Carrier", {"text": f"t{n}"}, room_id=agent)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    redis = start_redis(tmp_path)
    agent = uuid.uuid4()
    sender_rt, receiver_rt = FakeRuntime(agent), FakeRuntime(agent)
    sender = EventRelay(await connect(redis.url), redis.url, receive=True)
    receiver = EventRelay(await connect(redis.url), redis.url, receive=True)
    got: list[AgentEvent] = []
    receiver.sinks.append(got.append)
    echoed: list[AgentEvent] = []
    sender.sinks.append(echoed.append)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(sender.run([sender_rt], stop)),
        asyncio.create_task(receiver.run([receiver_rt], stop)),
    ]
    try:
        # Both subscribed: an event goes across.
        async def probe() -> None:
            while not got:
                sender_rt.events.publish(event(agent, -1))
                await asyncio.sleep(0.1)

        await asyncio.wait_for(probe(), 15)
        got.clear()
        yield Pair(redis, sender, receiver, sender_rt.events, got, agent)
        assert not echoed, "a process received its own events"
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        redis.stop()


async def test_events_cross_in_order_and_never_echo(pair: Pair) -> None:
    for n in range(500):
        pair.bus.publish(event(pair.agent, n))
    await wait_until(lambda: len(pair.got) >= 500)
    assert [e.data["text"] for e in pair.got] == [f"t{n}" for n in range(500)]
    # An event of an agent the receiver does not serve is ignored.
    pair.bus.publish(event(uuid.uuid4(), 0))
    await asyncio.sleep(0.3)
    assert len(pair.got) == 500


async def test_redis_down_never_blocks_a_turn_and_drops_are_bounded(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    if pair.redis.process is None:
        pytest.skip("CARRIER_TEST_REDIS_URL: this test cannot stop that server")
    caplog.set_level(logging.WARNING, logger="carrier.cluster.events")
    pair.redis.stop()
    await wait_until(lambda: not pair.receiver.health.up)
    burst = event_relay.QUEUE_SIZE * 3
    started = time.perf_counter()
    for n in range(burst):
        pair.bus.publish(event(pair.agent, n))
    spent = time.perf_counter() - started
    assert spent < 2.0, f"publishing {burst} events took {spent:.2f}s with Redis down"

    def unreachable() -> int:
        return sum("Redis unreachable" in r.getMessage() for r in caplog.records)

    await wait_until(lambda: unreachable() >= 2)  # the sender finds out when it next tries
    await asyncio.sleep(0.5)  # and says so no more often than that
    assert pair.sender._queue.qsize() <= event_relay.QUEUE_SIZE
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 2  # once per relay, not per try
    dropped = [m for m in messages if m.startswith("Dropped ")]
    assert len(dropped) == 1, dropped  # rate-limited: one warning for thousands of drops
    assert "outgoing queue" in dropped[0] or "unreachable" in dropped[0]
    assert all("Traceback" not in m for m in messages)

    caplog.clear()
    pair.redis.start()
    await wait_until(lambda: pair.receiver.health.up and pair.sender.health.up, 20)
    reconnected = [r.getMessage() for r in caplog.records if "Redis reconnected" in r.getMessage()]
    assert len(reconnected) == 2, reconnected
    # Flowing again; what queued during the outage was fresh, so some of it may arrive too.
    pair.got.clear()
    marker = AgentEvent("typing", pair.agent, "Carrier", {"state": "start"}, room_id=pair.agent)
    pair.bus.publish(marker)
    await wait_until(lambda: any(e.id == marker.id for e in pair.got))


def test_without_redis_url_nothing_imports_redis() -> None:
    """One process without Redis stays as before: no relay, and redis-py never loaded."""
    code = (
        "import asyncio, sys\n"
        "from carrier_cli.config import Settings\n"
        "from carrier_cli.cluster import event_relay\n"
        "import carrier_cli.clients.api.server, carrier_cli.clients.api.hub\n"
        "relay = asyncio.run(event_relay.open_relay(Settings(redis_url=None), receive=True))\n"
        "assert relay is None and event_relay.services(None) == []\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CARRIER_REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def test_a_redis_that_stops_answering_does_not_hold_the_publisher(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: the TCP connection stays up but nothing answers. The publish times out,
    the outage is logged, turns keep publishing without waiting; after SIGCONT it flows."""
    import signal

    if pair.redis.process is None:
        pytest.skip("CARRIER_TEST_REDIS_URL: this test cannot pause that server")
    monkeypatch.setattr(event_relay, "PUBLISH_TIMEOUT", 1.0)
    caplog.set_level(logging.WARNING, logger="carrier.cluster.events")
    pair.redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.perf_counter()
        for n in range(100):
            pair.bus.publish(event(pair.agent, n))
        assert time.perf_counter() - started < 0.5
        await wait_until(lambda: not pair.sender.health.up, 10)
        assert any("TimeoutError" in r.getMessage() for r in caplog.records)
    finally:
        pair.redis.process.send_signal(signal.SIGCONT)
    pair.got.clear()
    marker = AgentEvent("typing", pair.agent, "Carrier", {"state": "stop"}, room_id=pair.agent)

    async def until_marker() -> None:
        while not any(e.id == marker.id for e in pair.got):
            pair.bus.publish(marker)
            await asyncio.sleep(0.2)

    await asyncio.wait_for(until_marker(), 20)
    assert pair.sender.health.up
    assert any("Redis reconnected" in r.getMessage() for r in caplog.records)
