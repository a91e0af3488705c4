"""The API process's side of the turn queue (`carrier serve --role api`): hand a turn to
the workers over a Redis Stream and wait, bounded, for its result.

Why Streams and not pub/sub for the turn itself: a turn must happen exactly once even if
a worker dies, and a consumer group gives each entry to one worker, keeps it pending until
that worker acknowledges it (after the reply is stored), and lets another take it over
(`XAUTOCLAIM`). The results come back on one inbox stream per API process, read by one
task for every waiting request, so a thousand waiting requests hold one Redis connection,
not a thousand.

Bounds: an agent's queue holds at most `turn_queue_max_len` waiting turns (503
`queue_full` past it: workers delete what they acknowledged, so the stream's length *is*
the backlog); a turn no worker takes within `turn_queue_pickup_timeout` is withdrawn and
answered 503 `no_worker` (withdrawal and pickup race through one `SET NX`, so a turn is
either run or refused, never both); a taken turn whose reply does not come within
`turn_queue_turn_timeout` is answered 504 `turn_timeout` (it may still finish: its reply
is stored, and a retry with the same Idempotency-Key returns it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from carrier_cli.clients.api.errors import ApiError
from carrier_cli.cluster.turn_wire import (
    QueuedTurn,
    ResultEntry,
    inbox_key,
    result_from_dict,
    state_key,
    turns_key,
)
from carrier_cli.runtime.types import IncomingMessage, TurnEvent, TurnResult

log = logging.getLogger("carrier_cli.cluster.turn_queue")

STATE_TTL = 86_400  # seconds a turn's started/abandoned mark is kept
READ_BLOCK_MS = 1000
READ_COUNT = 256
MAX_BUFFERED_DELTAS = 1024  # per request; past it deltas are dropped (the reply has it all)
BACKOFF_MAX = 5.0


def no_worker(seconds: float) -> ApiError:
    return ApiError(
        503,
        "no_worker",
        f"No worker took this turn within {seconds:g} s: no `carrier run --role worker` "
        "is running for this agent, or all of them are busy.",
        hint="Start a worker (`carrier run --role worker --character NAME` with the same "
        "REDIS_URL and DATABASE_URL), then send the message again.",
        headers={"Retry-After": "5"},
    )


def turn_timeout(seconds: float) -> ApiError:
    return ApiError(
        504,
        "turn_timeout",
        f"A worker took this turn but its reply did not come within {seconds:g} s.",
        hint="The turn may still finish and its reply be stored: retry with the same "
        "Idempotency-Key to get it, or raise turn_queue_turn_timeout.",
    )


def queue_unavailable(where: str, exc: BaseException) -> ApiError:
    return ApiError(
        503,
        "queue_unavailable",
        f"The turn queue (Redis at {where}) is not reachable ({type(exc).__name__}).",
        hint="Try again shortly; check that Redis is running and REDIS_URL is right.",
        headers={"Retry-After": "5"},
    )


@dataclass
class _Progress:
    """What one request has seen: a worker took its turn; the turn is answered."""

    started: bool = False
    over: bool = False


class TurnQueue:
    """Submit turns to the workers; one per API process (`start()` before use)."""

    def __init__(
        self,
        redis: Any,
        *,
        max_len: int = 10_000,
        pickup_timeout: float = 30.0,
        turn_timeout: float = 300.0,
        where: str = "redis",
    ) -> None:
        self.redis = redis
        self.max_len = max_len
        self.pickup_timeout = pickup_timeout
        self.turn_timeout = turn_timeout
        self.where = where  # the masked URL, for messages
        self.process_id = uuid.uuid4().hex
        self.inbox = inbox_key(self.process_id)
        self._waiting: dict[str, asyncio.Queue[ResultEntry]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, redis: Any, settings: Any) -> TurnQueue:
        from carrier_cli.cluster.redis_client import masked

        return cls(
            redis,
            max_len=settings.turn_queue_max_len,
            pickup_timeout=settings.turn_queue_pickup_timeout,
            turn_timeout=settings.turn_queue_turn_timeout,
            where=masked(settings.redis_url or ""),
        )

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="turn-queue-inbox")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        with contextlib.suppress(Exception):
            await self.redis.delete(self.inbox)

    # ------------------------------------------------------------------ submit --
    async def handle(self, agent_id: uuid.UUID, message: IncomingMessage) -> TurnResult:
        """The turn's result, run by a worker (raises ApiError for what the client gets)."""
        async for event in self.events(agent_id, message, stream=False):
            if event.kind == "done" and event.result is not None:
                return event.result
        raise AssertionError("the turn's events ended without a result")  # pragma: no cover

    async def events(
        self, agent_id: uuid.UUID, message: IncomingMessage, *, stream: bool, deltas: bool = True
    ) -> AsyncIterator[TurnEvent]:
        """The turn's `delta` events (when `stream` and `deltas`) and its `done`, like
        `AgentRuntime.stream_message`, but run by a worker. `deltas=False`: the worker
        streams (its runtime publishes reply.token events) without sending them here."""
        request_id = uuid.uuid4().hex
        results: asyncio.Queue[ResultEntry] = asyncio.Queue()
        self._waiting[request_id] = results
        key = turns_key(agent_id)
        entry_id: Any = None
        progress = _Progress()
        try:
            turn = QueuedTurn(request_id, str(agent_id), self.inbox, stream, message, deltas)
            entry_id = await self._enqueue(turn)
            async for event in self._follow(request_id, results, key, entry_id, progress):
                yield event
        finally:
            self._waiting.pop(request_id, None)
            if entry_id is not None and not progress.started and not progress.over:
                # The client left before any worker took the turn: withdraw it, so nobody
                # answers a request that is gone (a worker that just took it keeps it).
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(self._abandon(request_id, key, entry_id))

    async def _enqueue(self, turn: QueuedTurn) -> Any:
        """The entry's id in the agent's stream."""
        key = turns_key(turn.agent_id)
        try:
            backlog = await self.redis.xlen(key)
            if backlog >= self.max_len:
                raise ApiError(
                    503,
                    "queue_full",
                    f"The agent's turn queue is full ({backlog} turns waiting).",
                    hint="Try again shortly, or start more workers.",
                    headers={"Retry-After": "5"},
                )
            # A hard bound too, for racing API processes (acknowledged turns are deleted,
            # so this never drops a turn unless the backlog doubled past the limit).
            return await self.redis.xadd(
                key, turn.fields(), maxlen=2 * self.max_len, approximate=True
            )
        except ApiError:
            raise
        except Exception as exc:
            log.warning("turn queue: could not enqueue at %s: %s", self.where, exc)
            raise queue_unavailable(self.where, exc) from None

    async def _abandon(self, request_id: str, stream: str, entry_id: Any) -> bool:
        """Withdraw a turn no worker took (and delete its entry: the stream's length stays
        the backlog); False when a worker took it just now."""
        try:
            won = await self.redis.set(state_key(request_id), "abandoned", nx=True, ex=STATE_TTL)
            if won:
                await self.redis.xdel(stream, entry_id)
        except Exception as exc:
            raise queue_unavailable(self.where, exc) from None
        return bool(won)

    async def _follow(
        self,
        request_id: str,
        results: asyncio.Queue[ResultEntry],
        stream: str,
        entry_id: Any,
        progress: _Progress,
    ) -> AsyncIterator[TurnEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pickup_timeout
        streaming_attempt: str | None = None  # deltas of one attempt only reach the client
        while True:
            try:
                entry = await asyncio.wait_for(results.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if progress.started:
                    progress.over = True
                    raise turn_timeout(self.turn_timeout) from None
                if await self._abandon(request_id, stream, entry_id):
                    progress.over = True
                    raise no_worker(self.pickup_timeout) from None
                progress.started = True  # a worker won the race: its entries are coming
                deadline = loop.time() + self.turn_timeout
                continue
            if entry.kind == "started":
                if not progress.started:
                    deadline = loop.time() + self.turn_timeout
                progress.started = True
            elif entry.kind == "delta":
                attempt = str(entry.data.get("attempt", ""))
                if streaming_attempt is None:
                    streaming_attempt = attempt
                if attempt == streaming_attempt:
                    yield TurnEvent("delta", text=str(entry.data.get("text", "")))
            elif entry.kind == "done":
                progress.over = True
                yield TurnEvent("done", result=result_from_dict(entry.data))
                return
            elif entry.kind == "error":
                progress.over = True
                raise ApiError(
                    int(entry.data.get("status", 500)),
                    str(entry.data.get("code", "internal")),
                    str(entry.data.get("message", "The turn failed on a worker.")),
                    hint=entry.data.get("hint"),
                )

    # ------------------------------------------------------------------- inbox --
    async def _read(self) -> None:
        """Route every result entry of this process's inbox to its waiting request."""
        last: Any = "0-0"
        backoff = 0.5
        failing = False
        while True:
            try:
                got = await self.redis.xread(
                    {self.inbox: last}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                if failing:
                    log.warning("turn queue: Redis at %s reachable again", self.where)
                    failing, backoff = False, 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning(
                        "turn queue: reading results from Redis at %s failed (%s: %s); retrying",
                        self.where,
                        type(exc).__name__,
                        exc,
                    )
                failing = True
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._route(fields)
            if got:
                with contextlib.suppress(Exception):  # keep the inbox short: read is done
                    await self.redis.xtrim(self.inbox, minid=last)

    def _route(self, fields: dict[Any, Any]) -> None:
        try:
            entry = ResultEntry.parse(fields)
        except ValueError as exc:
            log.warning("turn queue: %s", exc)
            return
        waiting = self._waiting.get(entry.request_id)
        if waiting is None:
            return  # the request gave up, or a replayed turn answered it twice
        if entry.kind == "delta" and waiting.qsize() >= MAX_BUFFERED_DELTAS:
            return
        waiting.put_nowait(entry)
