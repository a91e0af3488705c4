"""Runtime events across processes: every process publishes its runtimes' events to Redis,
and every `carrier serve` feeds the other processes' events into its WebSocket hub.

Why pub/sub and not Streams: these events are live fan-out to whoever is watching *now*
(a WebSocket on another server). Nothing must happen exactly once because of them, and
nothing is lost for good when one is missed: a `message.created` is a stored message, and
a client that reconnects replays what it missed from memory with `since`; tokens and
typing are worthless a few seconds later. Pub/sub costs Redis no memory per event, has
no consumer groups to create, trim or reclaim, and delivers in well under a millisecond.
Streams would keep a log nobody reads again (and need a MAXLEN policy and a cursor per
server). Work that must happen once (a turn, a delivery) is claimed elsewhere, never
here.

Shape: a channel per agent (`carrier:events:<agent id>`), so a server subscribes only to
the agents it serves. Each message is a JSON object with the event and the origin id of
the process that published it (random, per process); a process ignores its own events,
which its hub already had from the local bus. Redis is reached through the process's one
client (cluster/redis_client.py): its pool lends one connection to PUBLISH and holds one
for the subscription (a subscribed connection cannot publish in RESP2).

Bounded and never in a turn's way: the bus callback only puts the event on a queue of
QUEUE_SIZE and returns; when Redis is slow or away the queue fills and further events are
dropped, counted, and reported at most once per WARN_EVERY seconds. Events that waited
longer than STALE_AFTER are dropped rather than sent late. Both loops retry with
exponential backoff (BACKOFF_START doubling to BACKOFF_MAX); the first failure logs
"Redis unreachable ..." and the first success after it "Redis reconnected ...".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from carrier_cli.cluster.redis_client import connect, masked
from carrier_cli.config import Settings
from carrier_cli.redact import scrub
from carrier_cli.runtime.events import AgentEvent

log = logging.getLogger("carrier.cluster.events")

CHANNEL_PREFIX = "carrier:events:"
QUEUE_SIZE = 4096  # events waiting to be published; past it they are dropped
BATCH = 256  # events sent in one pipeline round trip
STALE_AFTER = 10.0  # seconds an event may wait for Redis before it is worthless
BACKOFF_START = 0.1
BACKOFF_MAX = 5.0
WARN_EVERY = 30.0  # seconds between two "dropped" warnings
READ_TIMEOUT = 1.0  # seconds one wait for a subscribed message lasts
CONFIRM_TIMEOUT = 5.0  # seconds Redis has to confirm a (re)subscription
PUBLISH_TIMEOUT = 5.0  # seconds one PUBLISH round trip may take

Sink = Callable[[AgentEvent], None]


def channel(agent_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{agent_id}"


def encode(event: AgentEvent, origin: str) -> bytes:
    """The wire form: the event's fields plus the publishing process's origin id."""
    return json.dumps(
        {
            "origin": origin,
            "id": event.id,
            "type": event.type,
            "agent_id": str(event.agent_id),
            "agent": event.agent,
            "room_id": str(event.room_id) if event.room_id else None,
            "created": event.created.isoformat(),
            "data": event.data,
        },
        separators=(",", ":"),
        default=str,
    ).encode()


def decode(raw: bytes | str) -> tuple[str, AgentEvent]:
    """(origin, event); ValueError/KeyError/TypeError on a message that is not ours."""
    body = json.loads(raw)
    room = body.get("room_id")
    event = AgentEvent(
        type=str(body["type"]),
        agent_id=uuid.UUID(body["agent_id"]),
        agent=str(body["agent"]),
        data=dict(body["data"]),
        room_id=uuid.UUID(room) if room else None,
        id=str(body["id"]),
        created=datetime.fromisoformat(body["created"]),
    )
    return str(body["origin"]), event


class Health:
    """Whether Redis answered last time; logs each change once, not each failure."""

    def __init__(self, url: str) -> None:
        self.url = masked(url)
        self.up = True
        self.dropped = 0  # events not published since the last report
        self._dropped_total = 0
        self._warned = 0.0

    def down(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            log.warning(
                "Redis unreachable at %s (%s: %s): events to and from other Carrier "
                "processes are dropped until it is back; retrying every %.1f-%.0fs.",
                self.url,
                type(exc).__name__,
                scrub(str(exc))[:200] or "no answer in time",
                BACKOFF_START,
                BACKOFF_MAX,
            )

    def back(self) -> None:
        if not self.up:
            self.up = True
            log.warning(
                "Redis reconnected at %s: events flow between processes again "
                "(%d events were dropped meanwhile).",
                self.url,
                self._dropped_total + self.dropped,
            )
            self._dropped_total = 0

    def drop(self, count: int, why: str) -> None:
        """Count dropped events; a warning at most every WARN_EVERY seconds."""
        self.dropped += count
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "Dropped %d runtime events for other processes (%s); Redis at %s.",
                self.dropped,
                why,
                self.url,
            )
            self._dropped_total += self.dropped
            self.dropped = 0


class EventRelay:
    """One process's side: publishes its runtimes' events, and (on a server) hands the
    other processes' events to `sinks` (the WebSocket hub's `publish`)."""

    def __init__(self, redis: Any, url: str, *, receive: bool, origin: str | None = None) -> None:
        self.redis = redis
        self.url = url
        self.receive = receive
        self.origin = origin or uuid.uuid4().hex
        self.sinks: list[Sink] = []
        self.health = Health(url)
        self.published = 0
        self.received = 0
        self._queue: asyncio.Queue[tuple[float, str, bytes]] = asyncio.Queue(QUEUE_SIZE)
        self._agents: set[uuid.UUID] = set()

    # -- outgoing ----------------------------------------------------------------------------
    def offer(self, event: AgentEvent) -> None:
        """The bus callback, inside the turn: queue and return, never wait."""
        try:
            payload = encode(event, self.origin)
        except (TypeError, ValueError) as exc:  # data that is not JSON: a bug, not a stop
            log.warning(
                "Event %s of %s is not JSON (%s); not relayed", event.type, event.agent, exc
            )
            return
        try:
            self._queue.put_nowait((time.monotonic(), channel(event.agent_id), payload))
        except asyncio.QueueFull:
            self.health.drop(1, f"the outgoing queue of {QUEUE_SIZE} is full")

    async def _publish_loop(self) -> None:
        backoff = BACKOFF_START
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            fresh = [item for item in batch if time.monotonic() - item[0] <= STALE_AFTER]
            if len(fresh) < len(batch):
                self.health.drop(len(batch) - len(fresh), f"older than {STALE_AFTER:.0f}s")
            if not fresh:
                continue
            try:
                if len(fresh) == 1:
                    sending = self.redis.publish(fresh[0][1], fresh[0][2])
                else:
                    pipe = self.redis.pipeline(transaction=False)
                    for _, name, payload in fresh:
                        pipe.publish(name, payload)
                    sending = pipe.execute()
                # A Redis that accepts but never answers (paused, a dead NAT path) must not
                # hold the loop: redis-py drops the connection of a cancelled command.
                await asyncio.wait_for(sending, PUBLISH_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.down(exc)
                self.health.drop(len(fresh), "Redis is unreachable")
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_START
            self.published += len(fresh)
            self.health.back()

    # -- incoming ----------------------------------------------------------------------------
    def _deliver(self, raw: bytes | str) -> None:
        try:
            origin, event = decode(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.debug("Ignoring a malformed event message: %s", exc)
            return
        if origin == self.origin or event.agent_id not in self._agents:
            return
        self.received += 1
        for sink in list(self.sinks):
            try:
                sink(event)
            except Exception as exc:  # a sink's bug must not stop the relay
                log.warning("Event sink %r failed on %s: %s", sink, event.type, exc)

    async def _confirmed(self, pubsub: Any, channels: int) -> None:
        """Read until Redis confirmed `channels` subscriptions (TimeoutError past
        CONFIRM_TIMEOUT); messages arriving meanwhile are delivered."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        confirmed = 0
        while confirmed < channels:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis did not confirm the subscription in {CONFIRM_TIMEOUT}s")
            message = await pubsub.get_message(timeout=READ_TIMEOUT)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                confirmed += 1
            elif message.get("type") == "message":
                self._deliver(message["data"])

    async def _receive_loop(self, channels: Sequence[str]) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        backoff = BACKOFF_START
        while True:
            pubsub = self.redis.pubsub()
            kept: Any = None
            try:
                await pubsub.subscribe(*channels)
                # redis-py would reconnect the subscription silently; we do it ourselves so
                # an outage is logged (and resubscribed) once, with our own backoff.
                kept = pubsub.connection.retry
                pubsub.connection.retry = Retry(NoBackoff(), 0)
                # SUBSCRIBE is only written, not answered, when it returns (a dead socket
                # takes it too): Redis is back once it confirmed every channel.
                await self._confirmed(pubsub, len(channels))
                self.health.back()
                backoff = BACKOFF_START
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None and message.get("type") == "message":
                        self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.down(exc)
            finally:
                if kept is not None and pubsub.connection is not None:
                    pubsub.connection.retry = kept  # it goes back to the shared pool
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    # -- the supervisor service --------------------------------------------------------------
    async def run(self, runtimes: Sequence[Any], stop: asyncio.Event) -> None:
        """Relay until `stop`; then flush what is queued (briefly) and close the client."""
        undo = [runtime.events.subscribe(self.offer) for runtime in runtimes]
        self._agents = {runtime.agent_id for runtime in runtimes}
        tasks = [asyncio.create_task(self._publish_loop(), name="event-relay:publish")]
        if self.receive and self._agents:
            channels = sorted(channel(agent) for agent in self._agents)
            tasks.append(
                asyncio.create_task(self._receive_loop(channels), name="event-relay:receive")
            )
        log.info(
            "Relaying events over Redis at %s (%s; process %s)",
            masked(self.url),
            "publish and receive" if self.receive else "publish",
            self.origin[:8],
        )
        try:
            await stop.wait()
            for _ in range(20):  # up to ~1 s for the last events of finished turns
                if self._queue.empty() or not self.health.up:
                    break
                await asyncio.sleep(0.05)
        finally:
            for step in undo:
                step()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Close the Redis client (twice is harmless)."""
        with contextlib.suppress(Exception):
            await self.redis.aclose()


async def open_relay(settings: Settings, *, receive: bool) -> EventRelay | None:
    """The process's relay when `redis_url` is set (None otherwise), connected now: a
    Redis that is not there is a RuntimeFailure (exit 1) before any runtime opens."""
    if not settings.redis_url:
        return None
    redis = await connect(settings.redis_url)
    return EventRelay(redis, settings.redis_url, receive=receive)


def services(relay: EventRelay | None) -> list[tuple[str, Any]]:
    """The supervisor service running `relay` (none without one)."""
    if relay is None:
        return []

    async def service(runtimes: Sequence[Any], settings: Settings, stop: asyncio.Event) -> None:
        await relay.run(runtimes, stop)

    return [("event-relay", service)]
