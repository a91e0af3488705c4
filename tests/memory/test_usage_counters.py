"""`usage_counters` on both backends: atomic increments (one upsert per counter), reads of
counters never added to, and two processes adding at once without losing any increment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from carrier_cli.memory.store import MemoryStore
from carrier_cli.usage.caps import Spent, UsageIncrement


async def test_increments_add_up_and_unknown_counters_are_zero(store: MemoryStore) -> None:
    assert await store.usage_spent("global", "day:2026-12-03") == (0, 0.0, 0)
    await store.add_usage(
        [
            UsageIncrement("global", "day:2026-12-03", tokens=100, cost_usd=0.25),
            UsageIncrement("character:Ada", "day:2026-12-03", tokens=100, cost_usd=0.25),
        ]
    )
    await store.add_usage(
        [
            UsageIncrement("global", "day:2026-12-03", tokens=50, cost_usd=0.5, calls=2),
            # the same counter twice in one batch: merged into one upsert
            UsageIncrement("global", "day:2026-12-03", tokens=1, cost_usd=0.0),
        ]
    )
    assert await store.usage_spent("global", "day:2026-12-03") == (151, 0.75, 4)
    assert await store.usage_spent("character:Ada", "day:2026-12-03") == (100, 0.25, 1)
    assert await store.usage_spent("global", "day:2026-12-04") == (0, 0.0, 0)
    many = await store.usage_spent_many(
        [("global", "day:2026-12-03"), ("character:Ada", "month:2026-12")]
    )
    assert many == {
        ("global", "day:2026-12-03"): Spent(151, 0.75, 4),
        ("character:Ada", "month:2026-12"): Spent(),
    }
    await store.add_usage([])  # nothing to add: no statement


async def test_concurrent_adds_from_two_engines_lose_nothing(db_url: str) -> None:
    first = await MemoryStore.open(db_url)
    second = await MemoryStore.open(db_url)
    try:

        async def writer(store: MemoryStore) -> None:
            for _ in range(40):
                await store.add_usage([UsageIncrement("global", "month:2026-12", tokens=3)])

        await asyncio.gather(writer(first), writer(second), writer(first), writer(second))
        assert await first.usage_spent("global", "month:2026-12") == (4 * 40 * 3, 0.0, 160)
    finally:
        await first.close()
        await second.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.usage.caps import UsageIncrement

    async def main(url, n):
        store = await MemoryStore.open(url)
        for _ in range(n):
            await store.add_usage([
                UsageIncrement("global", "day:2026-12-03", tokens=7, cost_usd=0.5),
                UsageIncrement("character:Ada", "day:2026-12-03", tokens=7, cost_usd=0.5),
            ])
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
async def test_two_processes_add_concurrently(db_url: str) -> None:
    store = await MemoryStore.open(db_url)  # schema created once, as `carrier db init` would
    n = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr[-3000:]
        for scope in ("global", "character:Ada"):
            assert await store.usage_spent(scope, "day:2026-12-03") == (2 * n * 7, n, 2 * n)
    finally:
        await store.close()
