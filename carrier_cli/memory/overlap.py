"""Keep the embedder and the database busy at the same time during large loads.

A load (ingest, import) is a series of batches, each embedded (a worker thread) and then
written (the database). One after the other, each waits for the other; with the next batch
started while the current one is still being written, embedding and writing overlap.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any


class Overlapped:
    """Runs the submitted jobs in the background, at most `depth` at once, in the order
    given (a job starts only when submitted, and `submit` waits for the oldest job once
    `depth` are running). The first failure is raised from `submit` or the exit of the
    `async with`; the jobs still running are then cancelled, never left behind.

    Jobs must not depend on each other's writes (two run at once): fine for batches of
    distinct memories stored without near-duplicate marking."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._running: deque[asyncio.Task[Any]] = deque()

    async def submit(self, job: Coroutine[Any, Any, Any]) -> None:
        try:
            while len(self._running) >= self.depth:
                await self._running.popleft()
        except BaseException:
            job.close()  # never started: no "coroutine was never awaited" warning
            raise
        self._running.append(asyncio.create_task(job))

    async def drain(self) -> None:
        while self._running:
            await self._running.popleft()

    async def __aenter__(self) -> Overlapped:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                await self.drain()
                return
            except BaseException:
                await self._cancel()
                raise
        await self._cancel()

    async def _cancel(self) -> None:
        running, self._running = list(self._running), deque()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
