"""`webhook_deliveries`: the durable outbox webhooks are sent from.

A row is one event for one webhook. Rows for a stored message are inserted in the same
write transaction as the message (MemoryStore: `store.outbox`), so a crash can lose
neither without the other; other events are enqueued in their own transaction. The
unique (webhook, event_id, event_type) makes a replayed event enqueue nothing new.

The sender claims due rows with one conditional UPDATE (`claimed_until` past, a fresh
`claim_token`): two processes never both claim a row, and a killed process's claims are
due again once their lease ends. Every later update names the token (a fence), so a
sender whose lease ran out cannot overwrite what the new claimer recorded. The same
statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    or_,
    select,
    update,
)

from carrier_cli.memory.schema import METADATA, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.store import MemoryStore

Status = Literal["pending", "delivered", "failed"]
ERROR_CHARS = 500  # last_error is bounded


OUTBOX = Table(
    "webhook_deliveries",
    METADATA,
    Column("id", String(32), primary_key=True),
    Column("webhook", String(64), nullable=False),
    Column("url_hash", String(64), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("claim_token", String(32), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    UniqueConstraint("webhook", "event_id", "event_type", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_created", "created_at"),
)
_CONFLICT = ["webhook", "event_id", "event_type"]


@dataclass(frozen=True)
class Delivery:
    """One row, as the sender and `carrier webhooks deliveries` see it."""

    id: str
    webhook: str
    url_hash: str
    event_type: str
    event_id: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: datetime
    window_start: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        webhook=row.webhook,
        url_hash=row.url_hash,
        event_type=row.event_type,
        event_id=row.event_id,
        payload=row.payload,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        window_start=row.window_start,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
    )


def new_row(
    *, webhook: str, url_hash: str, event_type: str, event_id: str, payload: str, now: datetime
) -> dict[str, Any]:
    """A pending row, due now, with a fresh delivery id."""
    return {
        "id": uuid.uuid4().hex,
        "webhook": webhook,
        "url_hash": url_hash,
        "event_type": event_type,
        "event_id": event_id[:64],
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "window_start": now,
        "claimed_until": None,
        "claim_token": None,
        "last_status": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }


def _backend(store: MemoryStore) -> MemoryBackend:
    # The store keeps its backend private to code outside memory/; this module is inside.
    return store._backend


def insert_rows(backend: MemoryBackend, conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert inside a caller's transaction; a row already there (a replay) is skipped."""
    if not rows:
        return 0
    stmt = backend.insert(OUTBOX).on_conflict_do_nothing(index_elements=_CONFLICT)
    inserted = 0
    for row in rows:  # one by one: rowcount of an executemany is not reliable everywhere
        inserted += int(conn.execute(stmt, dict(row)).rowcount or 0)
    return inserted


async def enqueue(store: MemoryStore, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows in their own transaction (events not tied to a stored memory)."""
    if not rows:
        return 0
    backend = _backend(store)
    return await backend.run_write(lambda conn: insert_rows(backend, conn, rows))


async def next_due(store: MemoryStore) -> datetime | None:
    """When the earliest pending row is due (its claim may still hold it longer)."""
    query = select(func.min(OUTBOX.c.next_attempt_at)).where(OUTBOX.c.status == "pending")
    async with _backend(store).read() as conn:
        return (await conn.execute(query)).scalar()


async def claim(
    store: MemoryStore, *, now: datetime, lease_until: datetime, token: str, limit: int
) -> list[Delivery]:
    """Take up to `limit` due rows for this sender until `lease_until`."""
    free = or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now)
    due = (OUTBOX.c.status == "pending") & (OUTBOX.c.next_attempt_at <= now) & free
    ids = select(OUTBOX.c.id).where(due).order_by(OUTBOX.c.next_attempt_at).limit(limit)

    def write(conn: Connection) -> list[Delivery]:
        picked = [r[0] for r in conn.execute(ids).all()]
        if not picked:
            return []
        # The conditions again: on PostgreSQL a concurrent claimer's committed update is
        # re-checked here, so a row is claimed once.
        conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(picked), due)
            .values(claimed_until=lease_until, claim_token=token)
        )
        rows = conn.execute(select(OUTBOX).where(OUTBOX.c.claim_token == token)).all()
        return [_delivery(r) for r in rows if r.id in picked]

    return await _backend(store).run_write(write)


async def finish(
    store: MemoryStore,
    delivery_id: str,
    token: str,
    *,
    status: Status,
    now: datetime,
    http_status: int | None,
    error: str | None,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record an attempt: delivered, failed, or pending again at `next_attempt_at`.
    False when the claim was lost (the lease ran out and another sender took the row)."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": OUTBOX.c.attempts + 1,
        "last_status": http_status,
        "last_error": error[:ERROR_CHARS] if error else None,
        "updated_at": now,
        "claimed_until": None,
        "claim_token": None,
    }
    if status == "delivered":
        values["delivered_at"] = now
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.id == delivery_id, OUTBOX.c.claim_token == token)
        .values(**values)
    )
    return await _backend(store).run_write(lambda conn: bool(conn.execute(stmt).rowcount))


async def release(store: MemoryStore, delivery_ids: Sequence[str], token: str) -> None:
    """Give claimed rows back untried (a sender stopping), due again at once."""
    if not delivery_ids:
        return
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(list(delivery_ids)), OUTBOX.c.claim_token == token)
        .values(claimed_until=None, claim_token=None)
    )
    await _backend(store).run_write(lambda conn: conn.execute(stmt))


async def list_deliveries(
    store: MemoryStore, *, status: Status | None = None, limit: int | None = 20
) -> list[Delivery]:
    """Newest first."""
    query = select(OUTBOX).order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id)
    if status is not None:
        query = query.where(OUTBOX.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    async with _backend(store).read() as conn:
        rows = (await conn.execute(query)).all()
    return [_delivery(r) for r in rows]


async def find(store: MemoryStore, id_or_prefix: str) -> list[Delivery]:
    """The rows whose id is this or starts with it (lower-case hex)."""
    value = id_or_prefix.strip().lower().replace("-", "")
    query = select(OUTBOX).where(OUTBOX.c.id.startswith(value, autoescape=True)).limit(5)
    async with _backend(store).read() as conn:
        rows = (await conn.execute(query)).all()
    return [_delivery(r) for r in rows]


async def redeliver(store: MemoryStore, delivery_id: str, now: datetime) -> bool:
    """Make a row pending again, due now, with a fresh retry window (its id is kept, so
    the receiver can still dedupe)."""
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.id == delivery_id)
        .values(
            status="pending",
            next_attempt_at=now,
            window_start=now,
            claimed_until=None,
            claim_token=None,
            updated_at=now,
        )
    )
    return await _backend(store).run_write(lambda conn: bool(conn.execute(stmt).rowcount))
