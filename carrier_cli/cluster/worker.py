"""`carrier run --role worker`: run the turns API processes queued (cluster/turn_queue.py).

Each worker joins the consumer group `turns` of every served agent's stream and reads
with `XREADGROUP ... COUNT <free slots> BLOCK 1000`, so it never holds more turns than it
runs (`worker_concurrency`). A turn is acknowledged (and deleted: the stream's length is
the backlog) only after its reply is stored and its result sent back; a worker that dies
leaves its turns pending in the group. Live workers heartbeat their own turns (`XCLAIM
... JUSTID` resets an entry's idle time) and every `turn_queue_claim_idle / 2` seconds run
`XAUTOCLAIM <stream> turns <me> <claim_idle> 0-0`, which hands them the turns of a worker
silent for longer than that. A reclaimed turn runs again with the same message_key, so the
runtime's deterministic ids make it a replay: the message is stored once, the reply once
(a reply already stored is returned as it is). A turn that has started `MAX_ATTEMPTS`
times without finishing (it kills its workers) is answered with an error, not retried.

Redis failing under a worker is logged once, retried with a bounded backoff, and logged
again when it answers; a result that could not be sent leaves the turn pending, so it is
replayed (not regenerated) and answered once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from carrier_cli.cluster.turn_wire import (
    GROUP,
    PREFIX,
    QueuedTurn,
    ResultEntry,
    result_to_dict,
    state_key,
    turns_key,
)

log = logging.getLogger("carrier_cli.cluster.worker")

MAX_ATTEMPTS = 3
INBOX_MAX_LEN = 10_000  # entries kept in an API process's inbox it does not read
INBOX_TTL = 600  # seconds an inbox nobody reads survives (its process died)
STATE_TTL = 86_400
READ_BLOCK_MS = 1000
BACKOFF_MAX = 5.0


def consumer_name() -> str:
    """Unique per process: a restarted worker is a new consumer, and the old one's
    pending turns are reclaimed like any dead worker's."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class TurnWorker:
    def __init__(
        self,
        redis: Any,
        runtimes: Sequence[Any],
        *,
        concurrency: int = 8,
        claim_idle: float = 30.0,
        where: str = "redis",
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.runtimes = {turns_key(r.agent_id): r for r in runtimes}
        self.concurrency = concurrency
        self.claim_idle = claim_idle
        self.where = where
        self.consumer = consumer or consumer_name()
        self._inflight: dict[tuple[str, bytes], asyncio.Task[None]] = {}
        self._failing = False
        self._backoff = 0.5

    @classmethod
    def from_settings(cls, redis: Any, runtimes: Sequence[Any], settings: Any) -> TurnWorker:
        from carrier_cli.cluster.redis_client import masked

        return cls(
            redis,
            runtimes,
            concurrency=settings.worker_concurrency,
            claim_idle=settings.turn_queue_claim_idle,
            where=masked(settings.redis_url or ""),
        )

    # --------------------------------------------------------------------- run --
    async def run(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        """Take and run turns until `stop`; then let the running ones finish for `grace`
        seconds (the rest stay pending, for another worker)."""
        await self._ensure_groups()
        names = ", ".join(r.character.name for r in self.runtimes.values())
        log.info("Worker %s taking turns for %s from %s", self.consumer, names, self.where)
        helpers = [
            asyncio.create_task(self._heartbeat(stop), name="worker-heartbeat"),
            asyncio.create_task(self._reclaim(stop), name="worker-reclaim"),
        ]
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._inflight)
                if free <= 0:
                    await self._wait_for_slot(stop)
                    continue
                got = await self._redis_call(
                    self.redis.xreadgroup,
                    GROUP,
                    self.consumer,
                    {key: ">" for key in self.runtimes},
                    count=free,
                    block=READ_BLOCK_MS,
                )
                for stream, entries in got or []:
                    for entry_id, fields in entries:
                        self._start(_text(stream), entry_id, fields)
        finally:
            for helper in helpers:
                helper.cancel()
            running = list(self._inflight.values())
            if running:
                _, late = await asyncio.wait(running, timeout=grace)
                for task in late:
                    task.cancel()
                if late:
                    log.warning(
                        "Worker stopping: %d turn(s) left pending for another worker", len(late)
                    )
                    await asyncio.wait(late, timeout=5)
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper

    async def _ensure_groups(self) -> None:
        """Join (create) the group of every served agent's stream, from its first entry:
        turns queued before any worker existed are run too."""
        from redis.exceptions import ResponseError

        from carrier_cli.errors import RuntimeFailure

        for key in self.runtimes:
            try:
                await self.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise RuntimeFailure(
                        f"Redis at {self.where} refused the turn queue's consumer group "
                        f"on {key} ({exc}).",
                        hint="Use Redis 6.2 or newer, and a user allowed the stream commands "
                        "(XGROUP, XREADGROUP, XAUTOCLAIM).",
                    ) from None
            except Exception as exc:
                raise RuntimeFailure(
                    f"Could not reach Redis at {self.where} ({type(exc).__name__}).",
                    hint="Start Redis or check REDIS_URL, then start the worker again.",
                ) from None

    async def _wait_for_slot(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {stopping, *self._inflight.values()}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()

    async def _redis_call(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One Redis call of the loops; a failure is logged once and backed off (bounded)."""
        try:
            result = await call(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (FLUSHALL): recreate it
                with contextlib.suppress(Exception):
                    await self._ensure_groups()
            if not self._failing:
                log.warning(
                    "Worker: Redis at %s failed (%s: %s); retrying",
                    self.where,
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            await asyncio.sleep(self._backoff)
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
            return None
        if self._failing:
            log.warning("Worker: Redis at %s reachable again", self.where)
            self._failing, self._backoff = False, 0.5
        return result

    def _start(self, stream: str, entry_id: Any, fields: Any) -> None:
        ident = (stream, entry_id if isinstance(entry_id, bytes) else str(entry_id).encode())
        if ident in self._inflight or fields is None:
            return  # ours already (a reclaim of our own turn), or deleted meanwhile
        task = asyncio.create_task(self._run_entry(stream, ident[1], fields))
        self._inflight[ident] = task
        task.add_done_callback(lambda _t: self._inflight.pop(ident, None))

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Reset the idle time of the turns we run, so nobody reclaims a live turn."""
        every = max(0.2, self.claim_idle / 3)
        while not stop.is_set():
            await asyncio.sleep(every)
            by_stream: dict[str, list[bytes]] = {}
            for stream, entry_id in list(self._inflight):
                by_stream.setdefault(stream, []).append(entry_id)
            for stream, ids in by_stream.items():
                await self._redis_call(
                    self.redis.xclaim, stream, GROUP, self.consumer, 0, ids, justid=True
                )

    async def _reclaim(self, stop: asyncio.Event) -> None:
        """Take over the turns of workers silent for longer than claim_idle."""
        every = max(0.2, self.claim_idle / 2)
        idle_ms = int(self.claim_idle * 1000)
        while not stop.is_set():
            await asyncio.sleep(every)
            for stream in self.runtimes:
                free = self.concurrency - len(self._inflight)
                if free <= 0:
                    break
                got = await self._redis_call(
                    self.redis.xautoclaim, stream, GROUP, self.consumer, idle_ms, "0-0", count=free
                )
                if not got:
                    continue
                claimed = got[1]
                for entry_id, fields in claimed:
                    if fields:
                        log.warning(
                            "Worker %s took over turn %s (its worker went silent)",
                            self.consumer,
                            _text(entry_id),
                        )
                    self._start(stream, entry_id, fields)

    # -------------------------------------------------------------------- turn --
    async def _run_entry(self, stream: str, entry_id: bytes, fields: Any) -> None:
        try:
            turn = QueuedTurn.parse(fields)
        except ValueError as exc:
            log.warning("Worker: dropping entry %s of %s: %s", _text(entry_id), stream, exc)
            await self._done(stream, entry_id)
            return
        runtime = self.runtimes[stream]
        try:
            attempt = await self._claim(turn)
        except Exception as exc:  # Redis down: the turn stays pending, reclaimed later
            log.warning("Worker: could not take turn %s: %s", turn.request_id, exc)
            return
        if attempt is None:
            await self._done(stream, entry_id)  # the API withdrew it before anyone took it
            return
        tag = f"{self.consumer}:{attempt}"
        if attempt > MAX_ATTEMPTS:
            log.error(
                "Worker: turn %s started %d times without finishing; answering an error",
                turn.request_id,
                attempt - 1,
            )
            body = {
                "status": 500,
                "code": "turn_failed",
                "message": f"The turn was started {attempt - 1} times and its worker stopped "
                "each time before replying.",
                "hint": "The workers' logs say why; the message is stored.",
            }
            if await self._send(turn, "error", body):
                await self._done(stream, entry_id)
            return
        if not await self._send(turn, "started", {"worker": self.consumer, "attempt": tag}):
            return  # stays pending: reclaimed when Redis is back
        try:
            result = await self._turn(runtime, turn, tag)
        except asyncio.CancelledError:
            raise  # stopping: left pending for another worker
        except Exception as exc:
            from carrier_cli.clients.api.turn_errors import failure_of

            failed = failure_of(exc)
            if failed.status >= 500 and failed.code == "internal":
                log.error("Worker: turn %s failed", turn.request_id, exc_info=exc)
            else:
                log.warning("Worker: turn %s failed: %s", turn.request_id, failed.message)
            body = {
                "status": failed.status,
                "code": failed.code,
                "message": failed.message,
                "hint": failed.hint,
            }
            if await self._send(turn, "error", body):
                await self._done(stream, entry_id)
            return
        # The reply is stored (the runtime stores it before its `done`): send, then ack.
        if await self._send(turn, "done", result):
            await self._done(stream, entry_id)

    async def _claim(self, turn: QueuedTurn) -> int | None:
        """This run's attempt number (1 the first time), or None if the API withdrew it."""
        key = state_key(turn.request_id)
        won = await self.redis.set(key, "started", nx=True, ex=STATE_TTL)
        if not won and (await self.redis.get(key)) == b"abandoned":
            return None
        attempts_key = f"{PREFIX}turn:{turn.request_id}:attempts"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(attempts_key)
            pipe.expire(attempts_key, STATE_TTL)
            count, _ = await pipe.execute()
        return int(count)

    async def _turn(self, runtime: Any, turn: QueuedTurn, tag: str) -> dict[str, Any]:
        if not turn.stream:
            return result_to_dict(await runtime.handle_message(turn.message))
        from contextlib import aclosing

        async with aclosing(runtime.stream_message(turn.message)) as events:
            async for event in events:
                if event.kind == "delta" and event.text and turn.deltas:
                    await self._send(turn, "delta", {"text": event.text, "attempt": tag})
                elif event.kind == "done" and event.result is not None:
                    return result_to_dict(event.result)
        raise RuntimeError("the turn ended without a result")

    async def _send(self, turn: QueuedTurn, kind: str, data: dict[str, Any]) -> bool:
        entry = ResultEntry(turn.request_id, kind, data)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(turn.reply_to, entry.fields(), maxlen=INBOX_MAX_LEN, approximate=True)
                pipe.expire(turn.reply_to, INBOX_TTL)
                await pipe.execute()
        except Exception as exc:
            log.warning("Worker: could not send the %s of turn %s: %s", kind, turn.request_id, exc)
            return False
        return True

    async def _done(self, stream: str, entry_id: bytes) -> None:
        """Acknowledge and delete: the turn's reply is stored and its answer sent."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                await pipe.execute()
        except Exception as exc:  # pending still: a reclaim replays it (no second reply)
            log.warning("Worker: could not acknowledge %s: %s", _text(entry_id), exc)


def worker_service(redis: Any) -> Any:
    """The supervisor service of `carrier run --role worker`, over the process's runtimes."""

    async def service(runtimes: Sequence[Any], settings: Any, stop: asyncio.Event) -> None:
        worker = TurnWorker.from_settings(redis, runtimes, settings)
        await worker.run(stop, grace=settings.shutdown_grace)

    return service


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
