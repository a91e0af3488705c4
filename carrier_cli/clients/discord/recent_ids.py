"""The bot's own recent message ids: a bounded, ordered set.

Each reply's id is seen twice, once when it is sent and once when the gateway echoes it
back as MESSAGE_CREATE. A deque holding both (as before) covered half the replies its
2,000 entries promised and answered `in` by scanning all of them; this keeps each id once,
forgets the oldest past the bound, and answers `in` from a dict.
"""

from __future__ import annotations


class RecentIds:
    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._ids: dict[str, None] = {}  # insertion order: the oldest first

    def add(self, message_id: str) -> None:
        if message_id in self._ids:
            return
        self._ids[message_id] = None
        if len(self._ids) > self.maxlen:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
