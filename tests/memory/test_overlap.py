"""Overlapped: at most `depth` jobs at once, in order, and no job left running after a
failure."""

from __future__ import annotations

import asyncio

import pytest

from carrier_cli.memory.overlap import Overlapped


async def test_runs_depth_jobs_at_once_in_order() -> None:
    running = 0
    peak = 0
    started: list[int] = []
    finished: list[int] = []

    async def job(n: int) -> None:
        nonlocal running, peak
        started.append(n)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        finished.append(n)

    async with Overlapped(depth=2) as pipeline:
        for n in range(6):
            await pipeline.submit(job(n))
            assert running <= 2
    assert peak == 2
    assert started == list(range(6)) and sorted(finished) == list(range(6))


async def test_a_failure_is_raised_and_the_other_jobs_are_cancelled() -> None:
    cancelled: list[int] = []

    async def slow(n: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    async def broken() -> None:
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        async with Overlapped(depth=3) as pipeline:
            await pipeline.submit(broken())
            await pipeline.submit(slow(1))
            await pipeline.submit(slow(2))
    assert cancelled == [1, 2]


async def test_an_error_in_the_body_cancels_the_running_jobs() -> None:
    cancelled: list[int] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    with pytest.raises(KeyError):
        async with Overlapped() as pipeline:
            await pipeline.submit(slow())
            await asyncio.sleep(0)
            raise KeyError("bad line")
    assert cancelled == [1]
