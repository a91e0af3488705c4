"""The outbox on SQLite and PostgreSQL: rows for stored messages commit with the message
(or not at all), a replay enqueues nothing new, and claims never overlap."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from carrier_cli.memory import outbox
from carrier_cli.memory.outbox import OUTBOX
from carrier_cli.memory.rows import M
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Arrival, Memory, MemoryKind
from carrier_cli.webhooks.policy import OutboxPolicy, publish
from carrier_cli.webhooks.settings import Webhook

ALL = Webhook(
    url="https://a.example/h", events=["message.created", "reply.completed"], name="all", secret="s"
)
ERRORS = Webhook(url="https://b.example/h", events=["agent.error"], name="errors", secret="s")


def _arrival(text: str, memory_id: uuid.UUID | None = None) -> Arrival:
    return Arrival(
        source="api",
        room_key="r1",
        room_name="Room one",
        sender_key="u1",
        sender_name="Ada",
        memory_id=memory_id or uuid.uuid4(),
        content={"text": text, "source": "api", "name": "Ada"},
        metadata={"sender_key": "u1"},
    )


async def _rows(store: MemoryStore) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(OUTBOX).order_by(OUTBOX.c.created_at))).all())


async def _memories(store: MemoryStore) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(M))).scalar_one())


async def test_a_stored_message_gets_its_rows_in_its_own_transaction(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    store.outbox = OutboxPolicy([ALL, ERRORS])
    recorded = await store.record_message(agent, _arrival("hello there"), embed=False)
    [row] = await _rows(store)
    assert (row.webhook, row.event_type, row.status, row.attempts) == (
        "all",
        "message.created",
        "pending",
        0,
    )
    assert row.event_id == str(recorded.memory.id) and len(row.id) == 32
    body = json.loads(row.payload)
    assert body["id"] == str(recorded.memory.id) and body["type"] == "message.created"
    data = body["data"]
    assert data["agent"] == "Carrier" and data["room"]["key"] == "r1"
    assert data["message"]["text"] == "hello there" and data["message"]["sender"]["agent"] is False
    assert data["message"]["sender"]["key"] == "u1"

    # The agent's reply: message.created and reply.completed, from the stored memory.
    reply = Memory(
        agent_id=agent,
        content={
            "text": "hi Ada",
            "source": "api",
            "name": "Carrier",
            "actions": ["REPLY"],
            "thought": "greet",
            "in_reply_to": str(recorded.memory.id),
        },
        kind=MemoryKind.MESSAGE,
        room_id=recorded.room.id,
        entity_id=agent,
        metadata={"decision": "RESPOND"},
    )
    await store.add(reply, embed=False, dedupe=False)
    rows = await _rows(store)
    kinds = sorted(r.event_type for r in rows if r.event_id == str(reply.id))
    assert kinds == ["message.created", "reply.completed"]
    completed = json.loads(next(r.payload for r in rows if r.event_type == "reply.completed"))
    assert completed["data"]["reply"] == {
        "id": str(reply.id),
        "text": "hi Ada",
        "actions": ["REPLY"],
        "thought": "greet",
    }
    assert completed["data"]["in_reply_to"] == str(recorded.memory.id)


async def test_a_replayed_message_or_event_enqueues_nothing_new(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    policy = OutboxPolicy([ALL, ERRORS])
    store.outbox = policy
    same = uuid.uuid4()
    first = await store.record_message(agent, _arrival("once", same), embed=False)
    again = await store.record_message(agent, _arrival("once", same), embed=False)
    assert again.seen_before and not first.seen_before
    assert len(await _rows(store)) == 1
    assert await policy.enqueue(store, "agent.error", {"x": 1}, event_id="e-1") == 1
    assert await publish(store, "agent.error", {"x": 1}, event_id="e-1") == 0
    assert await policy.enqueue(store, "instagram.failed", {"x": 1}) == 0  # nobody wants it
    assert len(await _rows(store)) == 2


async def test_without_webhooks_nothing_is_enqueued(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    await store.record_message(agent, _arrival("quiet"), embed=False)
    assert await publish(store, "agent.error", {"x": 1}) == 0
    assert await _rows(store) == []


class _Failing(OutboxPolicy):
    """Writes its rows, then the transaction fails (as a failing insert would)."""

    def rows_for_messages(self, backend: Any, conn: Any, memories: Any) -> None:
        super().rows_for_messages(backend, conn, memories)
        assert conn.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 1
        raise RuntimeError("the message's transaction fails after its outbox rows")


async def test_a_failing_message_transaction_leaves_no_outbox_row(store: MemoryStore) -> None:
    agent = await store.ensure_agent("Carrier")
    store.outbox = _Failing([ALL])
    before = await _memories(store)
    with pytest.raises(RuntimeError, match="fails after"):
        await store.record_message(agent, _arrival("lost together"), embed=False)
    assert await _rows(store) == []
    assert await _memories(store) == before  # the message was rolled back with them


def _row(event_id: str, now: datetime) -> dict[str, Any]:
    return outbox.new_row(
        webhook="all",
        url_hash="h",
        event_type="agent.error",
        event_id=event_id,
        payload="{}",
        now=now,
    )


async def test_claims_never_overlap_and_a_lost_lease_is_fenced(db_url: str) -> None:
    first = await MemoryStore.open(db_url)
    second = await MemoryStore.open(db_url)  # another process on the same database
    try:
        now = datetime.now(UTC)
        await outbox.enqueue(first, [_row(f"e{i}", now) for i in range(10)])
        lease = now + timedelta(seconds=30)
        a, b, c = await asyncio.gather(
            outbox.claim(first, now=now, lease_until=lease, token="a" * 32, limit=6),
            outbox.claim(second, now=now, lease_until=lease, token="b" * 32, limit=6),
            outbox.claim(second, now=now, lease_until=lease, token="c" * 32, limit=6),
        )
        ids = [d.id for d in a + b + c]
        assert len(ids) == len(set(ids)) == 10
        assert await outbox.claim(first, now=now, lease_until=lease, token="d" * 32, limit=10) == []

        # The first sender dies; after its lease its rows are due again for another.
        later = lease + timedelta(seconds=1)
        retaken = await outbox.claim(
            second, now=later, lease_until=later + timedelta(seconds=30), token="e" * 32, limit=10
        )
        assert {d.id for d in retaken} == set(ids)
        lost = a[0] if a else b[0]
        old_token = "a" * 32 if a else "b" * 32
        assert not await outbox.finish(
            first, lost.id, old_token, status="delivered", now=later, http_status=200, error=None
        )
        assert await outbox.finish(
            second, lost.id, "e" * 32, status="delivered", now=later, http_status=200, error=None
        )
        [done] = await outbox.find(second, lost.id[:10])
        assert done.status == "delivered" and done.attempts == 1 and done.delivered_at
    finally:
        await first.close()
        await second.close()


async def test_retry_failed_list_and_redeliver(store: MemoryStore) -> None:
    now = datetime.now(UTC)
    await outbox.enqueue(store, [_row("x", now)])
    [d] = await outbox.claim(
        store, now=now, lease_until=now + timedelta(seconds=5), token="t" * 32, limit=5
    )
    soon = now + timedelta(seconds=60)
    await outbox.finish(
        store,
        d.id,
        "t" * 32,
        status="pending",
        now=now,
        http_status=500,
        error="HTTP 500 " + "x" * 900,
        next_attempt_at=soon,
    )
    [pending] = await outbox.list_deliveries(store)
    assert pending.attempts == 1 and pending.last_status == 500
    assert pending.next_attempt_at == soon and len(pending.last_error or "") == 500
    assert await outbox.claim(store, now=now, lease_until=soon, token="u" * 32, limit=5) == []
    [again] = await outbox.claim(
        store, now=soon, lease_until=soon + timedelta(seconds=5), token="u" * 32, limit=5
    )
    await outbox.finish(
        store, again.id, "u" * 32, status="failed", now=soon, http_status=404, error="HTTP 404"
    )
    assert [f.id for f in await outbox.list_deliveries(store, status="failed")] == [d.id]
    assert await outbox.redeliver(store, d.id, soon)
    [back] = await outbox.list_deliveries(store)
    assert back.status == "pending" and back.window_start == soon and back.attempts == 2
    assert back.id == d.id  # the same delivery id: receivers can dedupe
