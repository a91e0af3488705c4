"""Where comments from Meta's webhooks go: the running comment repliers of this process.

`carrier serve --client instagram` runs the API and the Instagram client in one process;
the webhook route (clients/api/routes/meta_webhooks.py) must answer Meta within seconds,
so it only drops each comment here, and the replier of the account (registered by
`run_comment_replies`) answers it through the same exactly-once path as a polled one.

Each listener has a bounded queue (`QUEUE_SIZE`): past it a comment is dropped with a
warning, which loses nothing, since the next poll finds every comment on the recent posts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from carrier_cli.clients.instagram.comments import Comment

log = logging.getLogger(__name__)

QUEUE_SIZE = 1_000

_LISTENERS: dict[str, list[asyncio.Queue[Comment]]] = {}


@contextmanager
def listening(account_id: str) -> Iterator[asyncio.Queue[Comment]]:
    """A queue receiving the account's webhook comments while the block runs."""
    queue: asyncio.Queue[Comment] = asyncio.Queue(QUEUE_SIZE)
    _LISTENERS.setdefault(account_id, []).append(queue)
    try:
        yield queue
    finally:
        queues = _LISTENERS.get(account_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            _LISTENERS.pop(account_id, None)


def deliver(account_id: str, comment: Comment) -> int:
    """Hand a comment to the account's listeners; returns how many took it (0: nobody
    here answers this account, or every queue is full)."""
    taken = 0
    for queue in _LISTENERS.get(account_id, []):
        try:
            queue.put_nowait(comment)
            taken += 1
        except asyncio.QueueFull:
            log.warning(
                "Instagram webhook: comment %s dropped (%d waiting); the next poll finds it",
                comment.id,
                queue.qsize(),
            )
    return taken


def accounts() -> list[str]:
    """The accounts with a running replier in this process."""
    return sorted(_LISTENERS)
