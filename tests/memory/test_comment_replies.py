"""The replies table on SQLite and PostgreSQL: one claimer per comment, a dead or expired
claim is taken over, every write is fenced by the owner, failures are bounded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from carrier_cli.memory import comment_replies as rows
from carrier_cli.memory.store import MemoryStore

LEASE = timedelta(minutes=15)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def alive(_owner: str) -> bool:
    return False


async def claim(store: MemoryStore, owner: str, *, now: datetime = NOW, **kw: Any) -> rows.Claim:
    return await rows.claim(
        store,
        comment_id=kw.get("comment_id", "c1"),
        account_id="acct",
        media_id="m1",
        parent_id=None,
        character="Marina",
        owner=owner,
        now=now,
        lease=LEASE,
        owner_is_dead=kw.get("dead", alive),
    )


async def test_one_claimer_of_many(store: MemoryStore) -> None:
    results = await asyncio.gather(*(claim(store, f"owner-{i}") for i in range(8)))
    assert sum(r.owned for r in results) == 1
    assert sum(not r.existed for r in results) == 1


async def test_a_held_claim_is_kept_an_expired_or_dead_one_taken_over(store: MemoryStore) -> None:
    first = await claim(store, "a")
    assert first.owned and not first.existed
    again = await claim(store, "a")  # the same process, another task: busy, not twice
    assert not again.owned
    assert not (await claim(store, "b")).owned
    dead = await claim(store, "b", dead=lambda owner: owner == "a")
    assert dead.owned and dead.existed and dead.row.claim_owner == "b"
    late = await claim(store, "c", now=NOW + LEASE + timedelta(seconds=1))
    assert late.owned and late.row.claim_owner == "c"
    # The fence: the owners that lost it can write nothing.
    assert not await rows.save_text(store, "c1", "b", "stale", NOW)
    assert await rows.save_text(store, "c1", "c", "Fresh reply", NOW)
    assert not await rows.finish(store, "c1", "a", status="replied", now=NOW, reply_id="r0")
    assert await rows.finish(store, "c1", "c", status="replied", now=NOW, reply_id="r1")
    row = await rows.get(store, "c1")
    assert row is not None and (row.status, row.reply_id, row.reply_text) == (
        "replied",
        "r1",
        "Fresh reply",
    )
    done = await claim(store, "d", now=NOW + timedelta(days=1))
    assert not done.owned and done.row.final


async def test_failures_are_bounded_and_counts_are_per_hour(store: MemoryStore) -> None:
    for attempt in range(3):
        assert (await claim(store, f"o{attempt}", comment_id="bad")).owned
        status = await rows.give_back(
            store, "bad", f"o{attempt}", now=NOW, reason="model down", max_attempts=3
        )
        assert status == ("failed" if attempt == 2 else "pending")
    assert not (await claim(store, "o9", comment_id="bad")).owned
    for i, minutes in enumerate((5, 30, 70)):
        owner = f"r{i}"
        await claim(store, owner, comment_id=f"ok{i}")
        await rows.finish(
            store,
            f"ok{i}",
            owner,
            status="replied",
            now=NOW - timedelta(minutes=minutes),
            reply_id=f"rep{i}",
        )
    assert await rows.replies_since(store, "Marina", NOW - timedelta(hours=1)) == 2
    assert await rows.final_ids(store, ["ok0", "ok1", "bad", "new"]) == {"ok0", "ok1", "bad"}
    await claim(store, "w", comment_id="waiting")
    assert await rows.release(store, "waiting", "w", now=NOW, reason="hourly cap")
    waiting = await rows.get(store, "waiting")
    assert waiting is not None and (waiting.status, waiting.attempts) == ("pending", 0)
    assert (await claim(store, "x", comment_id="waiting")).owned
