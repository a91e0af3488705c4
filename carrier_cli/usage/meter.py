"""The usage meter: prices each call record, keeps the session's and turns' totals, and
writes the records to the store in the background.

`observe` is the model's observer: it runs on the event loop right after an attempt, so
it only prices, sums and queues (a few microseconds); a background task writes batches
through `await sink.record_calls(batch)`. A turn never waits for the database and never
fails because of it: a full queue drops records (counted, warned about once), a sink that
keeps failing is retried a few times and then reported in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from carrier_cli.usage.prices import ModelPrice, PriceTable
from carrier_cli.usage.records import CallRecord, UsageTotals

log = logging.getLogger("carrier.usage")


class CallSink(Protocol):
    """Where records go: the MemoryStore (`record_calls`, on both backends)."""

    async def record_calls(self, records: Sequence[CallRecord]) -> None: ...


class UsageMeter:
    """One per runtime (`runtime.usage`). `sink` None, or without `record_calls`: totals
    only, nothing is stored."""

    queue_limit = 10_000
    batch_size = 200
    flush_interval = 0.5  # seconds a record may wait for its batch to fill
    turns_kept = 64
    write_attempts = 3
    retry_delay = 0.5  # seconds, doubled per failed write

    def __init__(
        self,
        sink: object | None,
        *,
        prices: PriceTable | Mapping[str, ModelPrice] | None = None,
        log_prompts: bool = False,
        character: str | None = None,
        agent_id: uuid.UUID | None = None,
        retention_days: int | None = None,
    ) -> None:
        writer = getattr(sink, "record_calls", None)
        self._write_calls: Any = writer if callable(writer) else None
        pruner = getattr(sink, "prune_calls", None)
        self._prune_calls: Any = pruner if callable(pruner) and retention_days else None
        self.retention_days = retention_days
        self._pruned_at: float | None = None  # monotonic time of the last retention pass
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable.default(prices)
        self.log_prompts = log_prompts
        self.character = character
        self.agent_id = agent_id
        self._totals = UsageTotals()
        self._by_model: dict[tuple[str, str], UsageTotals] = {}
        self._turns: OrderedDict[uuid.UUID, UsageTotals] = OrderedDict()
        self._turn_unpriced: dict[uuid.UUID, list[str]] = {}  # only turns with such calls
        self._pending: deque[CallRecord] = deque()
        self.dropped = 0  # records lost to a full queue
        self.lost = 0  # records the sink refused after every retry
        self.written = 0
        self._warned_full = False
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- the observer ----------------------------------------------------------------------
    def observe(self, record: CallRecord) -> None:
        """Price, sum and queue one record. Never blocks, never raises for a full queue."""
        if record.cost_usd is None:
            record.cost_usd = self.prices.cost(record.provider, record.model, record.usage)
        if self.log_prompts:
            if record.prompt is not None or record.output is not None:
                from carrier_cli.redact import scrub

                record.prompt = None if record.prompt is None else scrub(record.prompt)
                record.output = None if record.output is None else scrub(record.output)
        else:
            record.prompt = record.output = None
        context = record.context
        if (context.character is None and self.character is not None) or (
            context.agent_id is None and self.agent_id is not None
        ):
            record.context = replace(
                context,
                character=context.character or self.character,
                agent_id=context.agent_id or self.agent_id,
            )
        self._totals.add(record)
        key = (record.provider, record.model)
        per_model = self._by_model.get(key)
        if per_model is None:
            per_model = self._by_model[key] = UsageTotals()
        per_model.add(record)
        turn_id = record.context.turn_id
        if turn_id is not None:
            turn = self._turns.get(turn_id)
            if turn is None:
                turn = self._turns[turn_id] = UsageTotals()
                while len(self._turns) > self.turns_kept:
                    old, _ = self._turns.popitem(last=False)
                    self._turn_unpriced.pop(old, None)
            turn.add(record)
            if record.cost_usd is None:
                names = self._turn_unpriced.setdefault(turn_id, [])
                if record.model not in names:
                    names.append(record.model)
        if self._write_calls is None:
            return
        if len(self._pending) >= self.queue_limit:
            self.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "usage records are arriving faster than the database takes them: "
                    "%d are queued; newer ones are dropped (counted in usage.dropped)",
                    self.queue_limit,
                )
            return
        self._pending.append(record)
        if len(self._pending) >= self.batch_size:
            self._full.set()
        self._wake.set()
        if self._task is None and not self._closing:
            self._start()

    __call__ = observe

    # -- reading ---------------------------------------------------------------------------
    def totals(self) -> UsageTotals:
        """Every call since the meter started (a copy)."""
        return replace(self._totals)

    def turn_totals(self, turn_id: uuid.UUID) -> UsageTotals:
        """One turn's calls (kept for the last 64 turns; empty when unknown)."""
        found = self._turns.get(turn_id)
        return replace(found) if found is not None else UsageTotals()

    def by_model(self) -> dict[tuple[str, str], UsageTotals]:
        """(provider, model) -> totals, in first-use order."""
        return {key: replace(value) for key, value in self._by_model.items()}

    def unpriced_models(self, turn_id: uuid.UUID | None = None) -> list[str]:
        """Models called without a known price: in the session, or in one turn."""
        if turn_id is not None:
            return list(self._turn_unpriced.get(turn_id, ()))
        return [model for (_, model), t in self._by_model.items() if t.unpriced_calls]

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- writing ---------------------------------------------------------------------------
    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # observed outside a loop: aclose()/flush() writes them
            return
        self._task = loop.create_task(self._run(), name="carrier-usage-writer")

    async def _prune(self) -> None:
        """Retention (`log_retention_days`): clear the stored prompts and outputs of calls
        older than that, once when the writer starts and then at most once a day, so a bot
        that runs for weeks keeps no user message longer than the operator said. Best effort:
        a failed pass is logged and tried again a day later."""
        if self._prune_calls is None or self.retention_days is None:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < 86_400:
            return
        self._pruned_at = now
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        try:
            cleared = await self._prune_calls(prompts_older_than=cutoff)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("could not apply log_retention_days: %s", reason)
        else:
            if cleared:
                log.info(
                    "cleared the stored prompts of %d model call(s) older than %d days",
                    cleared,
                    self.retention_days,
                )

    async def _run(self) -> None:
        await self._prune()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._pending) < self.batch_size and not self._closing:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            await self._write_batch()
            await self._prune()

    async def _write_batch(self) -> None:
        batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
        if not batch:
            return
        for attempt in range(self.write_attempts):
            try:
                await self._write_calls(batch)
            except Exception as exc:
                if attempt + 1 >= self.write_attempts:
                    self.lost += len(batch)
                    log.warning(
                        "could not store %d model call record(s) after %d attempts: %s",
                        len(batch),
                        self.write_attempts,
                        f"{type(exc).__name__}: {exc}"[:300],
                    )
                    return
                await asyncio.sleep(self.retry_delay * (2**attempt))
            else:
                self.written += len(batch)
                return

    async def flush(self) -> None:
        """Write everything queued now (tests, `aclose`)."""
        if self._write_calls is None:
            return
        while self._pending:
            await self._write_batch()

    async def aclose(self) -> None:
        """Stop the writer and write what is left (AgentRuntime.aclose awaits it)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._wake.set()
            self._full.set()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
            except Exception:  # the writer reports its own failures; never fail a shutdown
                log.exception("usage writer failed")
        await self.flush()
