"""Server-Sent Events framing, and keep-alive pings around a slow producer.

Each event is `id: N`, `event: NAME`, `data: JSON` and a blank line; the id counts up
from 1 within one response. While nothing comes for `ping_every` seconds a `: ping`
comment goes out, so proxies and load balancers that drop idle connections keep the
stream open while the model thinks.

The producer (e.g. a turn) runs in its own task feeding a bounded queue, never driven
step by step from the response: the turn sets context variables around its awaits, which
must all happen in one task, and the queue's bound makes a slow reader slow the producer
down instead of making the server buffer without limit. When the client goes away the
response is cancelled and so is the producer (the runtime keeps its memory consistent on
cancellation: no half reply is ever stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

PING = b": ping\n\n"
QUEUE_BOUND = 256


def frame(name: str, data: Any, event_id: int) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {name}\ndata: {body}\n\n".encode()


_END = object()


async def pinged(
    produce: Callable[[], AsyncIterator[Any]], ping_every: float
) -> AsyncIterator[Any]:
    """The items of `produce()`, with `PING` yielded whenever none came for `ping_every`
    seconds. What the producer raises is raised here, after the items before it."""
    queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_BOUND)

    async def pump() -> None:
        try:
            async for item in produce():
                await queue.put(item)
        except Exception as exc:
            await queue.put(_Failure(exc))
        else:
            await queue.put(_END)

    task = asyncio.get_running_loop().create_task(pump(), name="sse-producer")
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), ping_every)
            except TimeoutError:
                yield PING
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error
