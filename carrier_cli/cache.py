"""One cache interface for what a process keeps between turns, and its in-process form.

`Cache` is what the runtime and the API code against: `get`, `set` (with a TTL),
`delete` (one key, in every process) and `invalidate` (every key of this cache, in every
process), plus `forget`, the synchronous form for callers that cannot await (the runtime's
`forget_facts`): it drops the entry here at once and tells the other processes as soon as
the event loop runs.

`LocalCache` is the default and what one process did before: a bounded dict, least
recently used out first, with a TTL per entry checked on read (no timer, no task). With
`redis_url` set, `carrier_cli.cluster.cache.RedisCache` keeps the same interface and
broadcasts deletions over Redis pub/sub so a fact stored through one process is seen by
the others on their next read, not after a TTL. This module imports nothing heavy: the
runtime uses it whether or not Redis is configured.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from time import monotonic
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
KC = TypeVar("KC", bound=Hashable, contravariant=True)  # keys are only ever passed in

DEFAULT_CAPACITY = 10_000
_NEVER = float("inf")


class Cache(Protocol[KC, V]):
    """What every cache offers; keys are hashable and, for Redis, `str()`-able."""

    def peek(self, key: KC) -> V | None:
        """The value held in this process, without I/O (None: not here; `get` may still
        find it in a shared tier). The hot path's first try: no coroutine, no closure."""
        ...

    async def get(self, key: KC) -> V | None:
        """The value, or None when absent or older than its TTL."""
        ...

    async def set(self, key: KC, value: V, ttl: float | None = None) -> None:
        """Store `value` for `ttl` seconds (None: the cache's default TTL)."""
        ...

    async def get_or_load(
        self, key: KC, load: Callable[[], Awaitable[V]], ttl: float | None = None
    ) -> V:
        """The cached value, or `load()`'s, stored unless the key was invalidated while
        it loaded (it may then predate the change: returned, not kept)."""
        ...

    async def delete(self, key: KC) -> None:
        """Drop `key` here and, for a shared cache, in every process (awaited)."""
        ...

    async def invalidate(self) -> None:
        """Drop every key here and, for a shared cache, in every process (awaited)."""
        ...

    def forget(self, key: KC | None = None) -> None:
        """`delete(key)` (or `invalidate()` for None) for callers that cannot await: at
        once in this process, in the others when the event loop next runs."""
        ...

    async def aclose(self) -> None:
        """Release what the cache holds (subscriptions); the cache is unusable after."""
        ...


class LocalCache(Generic[K, V]):
    """A bounded LRU with a TTL per entry, in this process only.

    `capacity` entries at most (the least recently used is evicted first); `ttl` seconds
    by default (None: entries never expire). The async methods only wrap the synchronous
    ones (`peek`, `put`, `drop`, `clear`), which callers on a hot path may use directly.
    """

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float | None = None,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()  # expires at, value
        self.epoch = 0  # bumped by every drop: a load that spans one is not stored

    # ------------------------------------------------------------------ synchronous core
    def peek(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] != _NEVER and item[0] <= self.clock():  # no clock read without a TTL
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        life = self.ttl if ttl is None else ttl
        expires = _NEVER if life is None else self.clock() + life
        self._items[key] = (expires, value)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def drop(self, key: K) -> None:
        self.epoch += 1
        self._items.pop(key, None)

    def clear(self) -> None:
        self.epoch += 1
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # ------------------------------------------------------------------ Cache
    async def get(self, key: K) -> V | None:
        return self.peek(key)

    async def set(self, key: K, value: V, ttl: float | None = None) -> None:
        self.put(key, value, ttl)

    async def get_or_load(
        self, key: K, load: Callable[[], Awaitable[V]], ttl: float | None = None
    ) -> V:
        value = self.peek(key)
        if value is None:
            epoch = self.epoch
            value = await load()
            if epoch == self.epoch:
                self.put(key, value, ttl)
        return value

    async def delete(self, key: K) -> None:
        self.drop(key)

    async def invalidate(self) -> None:
        self.clear()

    def forget(self, key: K | None = None) -> None:
        if key is None:
            self.clear()
        else:
            self.drop(key)

    async def aclose(self) -> None:
        self.clear()
