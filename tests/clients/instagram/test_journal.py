"""The journal on SQLite and PostgreSQL: unique keys, leases, takeover, schema."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carrier_cli.clients.instagram import journal as journal_mod
from carrier_cli.clients.instagram.journal import Journal, LeaseLost, make_owner
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.config import Settings, load_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = (
        str(tmp_path / "j.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    return load_settings(overrides={"database_url": url}, use_stored_keys=False).settings


@pytest.fixture
async def journal(db_settings: Settings) -> AsyncIterator[Journal]:
    j = await Journal.open(db_settings.database_url)
    yield j
    await j.close()


async def make_post(j: Journal, key: str = "k1") -> int:
    record, _ = await j.find_or_create(key, kind="image", caption="c", items=[], options={})
    return record.id


async def test_same_key_same_row_even_when_racing(db_settings: Settings) -> None:
    journals = [await Journal.open(db_settings.database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                j.find_or_create("race", kind="image", caption="c", items=[{"a": 1}], options={})
                for j in journals
            )
        )
    finally:
        for j in journals:
            await j.close()
    assert len({r.id for r, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_only_one_concurrent_claim_wins(db_settings: Settings) -> None:
    journals = [await Journal.open(db_settings.database_url) for _ in range(4)]
    try:
        post_id = await make_post(journals[0])
        owners = [make_owner() for _ in journals]
        wins = await asyncio.gather(
            *(j.claim(post_id, o) for j, o in zip(journals, owners, strict=True))
        )
        assert sum(wins) == 1
        record = await journals[0].require(post_id)
        assert record.lease_owner == owners[wins.index(True)] and record.attempts == 1
    finally:
        for j in journals:
            await j.close()


async def test_lease_release_expiry_and_lost_lease(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_id = await make_post(journal)
    first, second = make_owner(), make_owner()
    assert await journal.claim(post_id, first)
    assert not await journal.claim(post_id, second)
    assert await journal.claim(post_id, first)  # re-entrant for the holder
    await journal.record_step(post_id, first, "uploaded", items=[{"url": "u"}])
    # An expired lease is taken over; the old holder then loses its writes.
    monkeypatch.setattr(journal_mod, "LEASE_SECONDS", -1.0)
    await journal.update(post_id, first)
    assert await journal.claim(post_id, second)
    with pytest.raises(LeaseLost):
        await journal.update(post_id, first, status="published")
    await journal.release(post_id, second)
    record = await journal.require(post_id)
    assert record.lease_owner is None and record.last_step == "uploaded"
    assert record.items == [{"url": "u"}]


async def test_lease_of_a_dead_process_is_taken_at_once(journal: Journal) -> None:
    post_id = await make_post(journal)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = make_owner().split(":")
    owner[1] = str(dead.pid)
    assert await journal.claim(post_id, ":".join(owner))
    assert (await journal.require(post_id)).lease_expires or time.time() + 60 < 0
    assert await journal.claim(post_id, make_owner())


async def test_history_published_since_and_force_keys(journal: Journal) -> None:
    from datetime import timedelta

    ids = [await make_post(journal, key) for key in ("a", "a+0", "a+1", "b")]
    assert await journal.count_with_prefix("a") == 3
    owner = make_owner()
    assert await journal.claim(ids[0], owner)
    await journal.record_step(
        ids[0], owner, "published", media_id="m1", published_at=journal_mod.now()
    )
    since = await journal.published_since(journal_mod.now() - timedelta(hours=1))
    assert len(since) == 1 and since[0].tzinfo is not None
    assert [r.id for r in await journal.history(limit=2)] == [ids[3], ids[2]]
    assert [r.media_id for r in await journal.history(status="published")] == ["m1"]
    assert await journal.last_published(None) is not None


async def test_open_waits_while_another_process_creates_the_file(tmp_path: Path) -> None:
    # The flake of two `carrier instagram post` on a fresh home: while the first process
    # held the write lock on the brand-new file (switching it to WAL, creating the schema),
    # the second's PRAGMA journal_mode=WAL got "database is locked" at once and Journal.open
    # failed. Here another connection holds that lock for 0.3 s: open must wait, not fail.
    import sqlite3
    import threading

    path = tmp_path / "new.db"
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    first.execute("BEGIN IMMEDIATE")
    first.execute("CREATE TABLE first_process (x)")
    released = threading.Event()

    def commit_later() -> None:
        time.sleep(0.3)
        released.set()  # before COMMIT: the waiting open can only get the lock after it
        first.execute("COMMIT")
        first.close()

    thread = threading.Thread(target=commit_later)
    thread.start()
    try:
        j = await Journal.open(str(path))
    finally:
        thread.join()
    try:
        assert released.is_set()
        post_id = await make_post(j)
        assert (await j.require(post_id)).status == "prepared"
    finally:
        await j.close()


@pytest.mark.filterwarnings("ignore:Did not recognize type 'vector'")
async def test_model_matches_migration(journal: Journal) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from carrier_cli.memory.schema import METADATA

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return [d for d in compare_metadata(context, METADATA) if "instagram_posts" in repr(d)]

    async with journal.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_a_live_post_keeps_its_lease_through_long_waits(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While one process waits (longer than a lease) another must not take the post over."""
    from carrier_cli.clients.instagram.pipeline import Publisher

    # The keeper renews every lease/4; with a 0.4 s lease a 0.3 s stall of a loaded machine
    # let the lease lapse. 1.2 s leaves 0.9 s of slack and still keeps the test short.
    lease = 1.2
    monkeypatch.setattr(journal_mod, "LEASE_SECONDS", lease)
    journal = await Journal.open(db_settings.database_url)
    other = await Journal.open(db_settings.database_url)
    try:
        post_id = await make_post(journal)
        owner = make_owner()
        assert await journal.claim(post_id, owner, ttl=lease)
        keeper = asyncio.create_task(
            Publisher(InstagramOptions.from_settings(db_settings), journal)._keep_lease(
                post_id, owner
            )
        )
        await asyncio.sleep(2.5 * lease)  # well past the first lease
        assert not await other.claim(post_id, make_owner())
        keeper.cancel()
        await asyncio.sleep(lease + 0.1)
        assert await other.claim(post_id, make_owner())  # expired once nobody renews it
    finally:
        await journal.close()
        await other.close()


def test_free_slot_time() -> None:
    from datetime import UTC, datetime, timedelta

    from carrier_cli.clients.instagram.graph import Quota
    from carrier_cli.clients.instagram.pipeline import free_slot_time

    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    posts = [at - timedelta(hours=h) for h in (30, 20, 5, 1)]  # the 30 h one left the window
    day = timedelta(hours=24)
    assert free_slot_time(posts, Quota(3, 3, 86400), at) == posts[1] + day
    # The limit was lowered to 2: two posts must leave before one is free.
    assert free_slot_time(posts, Quota(3, 2, 86400), at) == posts[2] + day
    assert free_slot_time([], Quota(5, 5, 86400), at) is None
