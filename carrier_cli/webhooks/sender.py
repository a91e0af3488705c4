"""The webhook sender: a supervisor service delivering the outbox's due rows.

`webhook_service(runtimes, settings, stop)` runs beside the clients (`carrier run`) and
the API (`carrier serve`). It sets the outbox policy on the runtimes' stores (so stored
messages get their rows in the same transaction), turns agent.error and budget.reached
into rows, and delivers: claim due rows (a lease, fenced by a token: outbox.claim), POST
each signed, then record delivered / retry later / failed.

Retries: timeouts, connection errors, 5xx, 408 and 429, after base * 2^attempts seconds
(jittered to 50-100 %, capped at an hour, at least a 429's Retry-After), until
`webhook_max_age_hours` after the row's retry window began; then failed. Any other 4xx,
a redirect, or a refused address (SSRF) fails at once.

One sender per database: on PostgreSQL the sender holds a session advisory lock (a
lease that dies with its connection) and a process without it waits; on SQLite the
claim itself is the guard (writes are serialised, and a claimed row is skipped until its
lease ends). A killed process's claims are due again after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from carrier_cli.config import Settings
from carrier_cli.memory import outbox
from carrier_cli.webhooks import ssrf
from carrier_cli.webhooks.http import Outcome, post, session
from carrier_cli.webhooks.options import WebhookOptions
from carrier_cli.webhooks.policy import OutboxPolicy
from carrier_cli.webhooks.settings import Webhook, resolve_secret
from carrier_cli.webhooks.signing import sign

log = logging.getLogger("carrier.webhooks")

SENDER_LOCK = 7261058  # PostgreSQL advisory lock key held by the database's one sender
POLL = 1.0  # seconds between looks for rows other processes wrote
MAX_DELAY = 3600.0
LEASE_MARGIN = 5.0  # a claim outlives the request's timeout by this much


@dataclass(frozen=True)
class Target:
    hook: Webhook
    secret: str


def targets(hooks: Sequence[Webhook]) -> dict[str, Target]:
    """Every configured webhook with its secret (a missing one is a ConfigError now)."""
    return {hook.key: Target(hook, resolve_secret(hook, index)) for index, hook in enumerate(hooks)}


def backoff(attempts: int, base: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt, after `attempts` failed ones (>= 1)."""
    delay = min(MAX_DELAY, base * 2 ** max(0, attempts - 1))
    delay *= 0.5 + random.random() / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_DELAY))
    return delay


class Sender:
    """Delivers one database's outbox."""

    def __init__(
        self, store: Any, to: dict[str, Target], options: WebhookOptions, policy: OutboxPolicy
    ) -> None:
        self.store = store
        self.to = to
        self.options = options
        self.policy = policy
        self.lease = timedelta(seconds=options.timeout + LEASE_MARGIN)
        self.limit = options.concurrency

    async def run(self, stop: asyncio.Event) -> None:
        """Send until stopped; on PostgreSQL only while leading, and a lost lease (its
        connection died: another process may lead now) means leading again first."""
        while not stop.is_set():
            lock = await self._leader(stop)
            try:
                if stop.is_set():
                    return
                await self._send(stop, lock)
            finally:
                if lock is not None:
                    await lock.release()
            if lock is None:
                return  # SQLite: sent until stopped

    async def _send(self, stop: asyncio.Event, lock: Any) -> None:
        async with session(
            allow_private=self.options.allow_private, concurrency=self.limit
        ) as client:
            while not stop.is_set() and not (lock is not None and lock.lost):
                # Cleared before looking, so a row written meanwhile wakes the wait.
                self.policy.wake.clear()
                due = await outbox.next_due(self.store)
                now = datetime.now(UTC)
                if due is not None and due <= now and await self._round(client):
                    continue
                # Nothing due, or due rows another sender holds (its lease): look
                # again when the next is due, and at least every POLL seconds.
                wait = POLL
                if due is not None and due > now:
                    wait = min(POLL, (due - now).total_seconds())
                await self._wait(stop, wait)

    async def _leader(self, stop: asyncio.Event) -> Any:
        """PostgreSQL: wait until this process holds the sender lock (a cluster.leader
        Lease; releasing it ends the lock). SQLite: None at once."""
        if self.store.backend != "postgresql":
            return None
        from carrier_cli.cluster.leader import acquire

        return await acquire(
            self.store.engine, SENDER_LOCK, stop, what="The webhook sender", retry=5.0
        )

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Until rows are written by this process, `seconds` pass, or stop."""
        waiters = {
            asyncio.create_task(stop.wait()),
            asyncio.create_task(self.policy.wake.wait()),
        }
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in waiters:
            task.cancel()

    async def _round(self, client: Any) -> bool:
        """Claim and send one batch; whether there was one."""
        now = datetime.now(UTC)
        token = uuid.uuid4().hex
        claimed = await outbox.claim(
            self.store, now=now, lease_until=now + self.lease, token=token, limit=self.limit
        )
        if not claimed:
            return False
        try:
            await asyncio.gather(*(self._deliver(client, d, token) for d in claimed))
        except asyncio.CancelledError:
            # Stopped past the grace period: what is still claimed is due again at once
            # (the receiver may see an attempt twice; delivery is at least once).
            with contextlib.suppress(Exception):
                await asyncio.shield(outbox.release(self.store, [d.id for d in claimed], token))
            raise
        return True

    async def _deliver(self, client: Any, delivery: outbox.Delivery, token: str) -> None:
        target = self.to.get(delivery.webhook)
        if target is None:
            await self._record(
                delivery, token, None, "failed", f"webhook {delivery.webhook!r} is not configured"
            )
            return
        body = delivery.payload.encode("utf-8")
        headers = sign(target.secret, body, event=delivery.event_type, delivery=delivery.id)
        try:
            outcome = await post(
                client,
                target.hook.url,
                body,
                headers,
                timeout=self.options.timeout,
                allow_private=self.options.allow_private,
            )
        except ssrf.RefusedAddress as exc:
            await self._record(delivery, token, None, "failed", exc.message)
            return
        except Exception as exc:  # never let one delivery stop the sender
            outcome = Outcome(None, 0.0, False, True, f"{type(exc).__name__}")
        self._log(delivery, outcome)
        if outcome.delivered:
            await self._record(delivery, token, outcome, "delivered", None)
            return
        attempts = delivery.attempts + 1
        if outcome.retry:
            delay = backoff(attempts, self.options.retry_delay, outcome.retry_after)
            now = datetime.now(UTC)
            give_up = delivery.window_start + timedelta(hours=self.options.max_age_hours)
            if now + timedelta(seconds=delay) <= give_up:
                await self._record(
                    delivery,
                    token,
                    outcome,
                    "pending",
                    outcome.error,
                    now + timedelta(seconds=delay),
                )
                return
            error = f"{outcome.error}; gave up after {attempts} attempts"
            await self._record(delivery, token, outcome, "failed", error)
            return
        await self._record(delivery, token, outcome, "failed", outcome.error)

    async def _record(
        self,
        delivery: outbox.Delivery,
        token: str,
        outcome: Outcome | None,
        status: outbox.Status,
        error: str | None,
        next_at: datetime | None = None,
    ) -> None:
        kept = await outbox.finish(
            self.store,
            delivery.id,
            token,
            status=status,
            now=datetime.now(UTC),
            http_status=outcome.status if outcome else None,
            error=error,
            next_attempt_at=next_at,
        )
        if status == "failed":
            log.warning(
                "Webhook %s: delivery %s (%s) failed: %s",
                delivery.webhook,
                delivery.id,
                delivery.event_type,
                error,
            )
        if not kept:
            log.info("Webhook delivery %s was claimed by another sender meanwhile", delivery.id)

    def _log(self, delivery: outbox.Delivery, outcome: Outcome) -> None:
        log.info(
            "Webhook %s: %s %s -> %s in %.0f ms (attempt %d)",
            delivery.webhook,
            delivery.event_type,
            delivery.id,
            outcome.status if outcome.status is not None else outcome.error,
            outcome.ms,
            delivery.attempts + 1,
        )


def attach(runtimes: Sequence[Any], policy: OutboxPolicy) -> list[Any]:
    """Set the policy on the runtimes' stores and follow their events; returns the
    functions that undo it."""
    undo: list[Any] = []
    stores: dict[int, Any] = {}
    for runtime in runtimes:
        store = runtime.store
        if id(store) not in stores:
            stores[id(store)] = store
            store.outbox = policy
            undo.append(lambda s=store: setattr(s, "outbox", None))
        undo.append(runtime.events.subscribe(_on_event(policy, store, runtime.character.name)))
        hook = _on_budget(policy, store, runtime.character.name)
        runtime.budget.on_budget_reached.append(hook)
        undo.append(lambda r=runtime, h=hook: r.budget.on_budget_reached.remove(h))
    return undo


def _on_event(policy: OutboxPolicy, store: Any, agent: str) -> Any:
    def callback(event: Any) -> None:
        if event.type == "agent.error":
            data = {"agent": agent, **event.data}
            policy.enqueue_soon(
                store, "agent.error", data, event_id=event.id, created=event.created
            )

    return callback


def _on_budget(policy: OutboxPolicy, store: Any, agent: str) -> Any:
    def hook(event: Any) -> None:
        # Stable per cap and period: every process and runtime seeing it enqueues it once.
        event_id = f"{event.scope}|{event.period}|{event.cap}"
        data = {
            "agent": agent,
            "scope": event.scope,
            "period": event.period,
            "cap": event.cap,
            "limit": event.limit,
            "spent": event.spent,
            "action": event.action,
        }
        policy.enqueue_soon(store, "budget.reached", data, event_id=event_id, created=event.at)

    return hook


async def webhook_service(runtimes: Sequence[Any], settings: Settings, stop: asyncio.Event) -> None:
    """The supervisor service (`services=[("webhooks", webhook_service)]`)."""
    if settings.webhooks:
        options = WebhookOptions.from_settings(settings)
        await _serve(runtimes, options, stop, targets(options.hooks))


def services(settings: Settings) -> list[tuple[str, Any]]:
    """What `carrier run` and `carrier serve` add to the supervisor's services: the sender
    when webhooks are configured. Secrets are read now, so a missing one stops the
    command before any runtime opens."""
    if not settings.webhooks:
        return []
    options = WebhookOptions.from_settings(settings)
    to = targets(options.hooks)

    async def service(runtimes: Sequence[Any], settings: Settings, stop: asyncio.Event) -> None:
        await _serve(runtimes, options, stop, to)

    return [("webhooks", service)]


async def _serve(
    runtimes: Sequence[Any], options: WebhookOptions, stop: asyncio.Event, to: dict[str, Target]
) -> None:
    policy = OutboxPolicy(options.hooks)
    undo = attach(runtimes, policy)
    log.info("Webhooks: %s", ", ".join(f"{k} ({', '.join(t.hook.events)})" for k, t in to.items()))
    senders: dict[str, Any] = {}
    for runtime in runtimes:  # one sender per database, over the first store opened on it
        senders.setdefault(runtime.store.url, runtime.store)
    try:
        await asyncio.gather(*(Sender(s, to, options, policy).run(stop) for s in senders.values()))
    finally:
        await policy.drain()
        for step in reversed(undo):
            step()
