"""The `carrier_cli.cache.Cache` interface over Redis: what one process learns, the others
see on their next read.

Each `RedisCache` keeps a bounded `LocalCache` in front (a near cache: a hit costs what it
costs without Redis) and, when given a codec, the values in Redis too (`SET key PX ttl`), so
a value computed in one process is read by the others. Deleting a key or invalidating a
cache is awaited: the Redis key goes, then a message on one pub/sub channel
(`carrier:cache:invalidate`) makes every process drop its local copy. Pub/sub is
fire-and-forget, so a process whose subscription dropped clears every near cache when it
subscribes again (what it missed cannot be stale afterwards), and the TTL still bounds
anything else.

`invalidate()` does not scan Redis: a cache's keys carry a generation
(`carrier:cache:<ns>:<gen>:<key>`), `INCR` of `carrier:cache:<ns>:gen` retires them all at
once and the old keys expire by their TTL.

A read that races an invalidation (the database read started before another process
stored a fact, the invalidation arrived while it ran) must not put the old value back:
`get_or_load` stores what it loaded only when no invalidation of that key arrived
meanwhile (the near cache's epoch, bumped by each drop).

Redis trouble never fails a turn: a read falls back to the loader, a write is skipped and
logged (once per outage), and a dropped subscription is retried with a bounded backoff.

One `Invalidations` per Redis URL per event loop is shared by every cache of the process
(`open_cache` counts its users; the last `aclose` ends it), so a process holds one
subscription, not one per character.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from carrier_cli.cache import DEFAULT_CAPACITY, LocalCache
from carrier_cli.cluster.redis_client import connect, masked
from carrier_cli.errors import RuntimeFailure

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("carrier.cluster.cache")

CHANNEL = b"carrier:cache:invalidate"
PREFIX = "carrier:cache:"
BACKOFF_FIRST = 0.1  # seconds before the first resubscribe
BACKOFF_MAX = 5.0  # seconds between resubscribes at most
SUBSCRIBE_TIMEOUT = 5.0  # seconds for the first subscription
MAX_PENDING = 256  # broadcasts `forget` may have under way per cache; past it: TTL only

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


class Invalidations:
    """The process's subscription to the invalidation channel, and its publisher."""

    def __init__(self, redis: Any, url: str) -> None:
        self.redis = redis
        self.url = url
        self.origin = uuid.uuid4().hex  # this process's own messages are not re-applied
        self.caches: dict[str, list[RedisCache[Any, Any]]] = {}
        self.users = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._outage = False

    async def start(self) -> None:
        """Subscribe, or a RuntimeFailure (the connection is closed again)."""
        self._task = asyncio.create_task(self._listen(), name="cache-invalidations")
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await self._ready.wait()
        except TimeoutError:
            await self.aclose()
            raise RuntimeFailure(
                f"Redis at {masked(self.url)} answered PING but no subscription was made "
                f"within {SUBSCRIBE_TIMEOUT:.0f} s.",
                hint="Check that Redis allows SUBSCRIBE for this user (ACL) and is not "
                "overloaded, or unset REDIS_URL to run a single process.",
            ) from None

    def add(self, cache: RedisCache[Any, Any]) -> None:
        self.caches.setdefault(cache.namespace, []).append(cache)

    def remove(self, cache: RedisCache[Any, Any]) -> None:
        group = self.caches.get(cache.namespace, [])
        if cache in group:
            group.remove(cache)
        if not group:
            self.caches.pop(cache.namespace, None)

    async def publish(self, namespace: str, key: str | None, gen: int | None = None) -> None:
        body = {"o": self.origin, "ns": namespace, "k": key, "g": gen}
        await self.redis.publish(CHANNEL, json.dumps(body, separators=(",", ":")))

    def apply(self, raw: bytes | str) -> None:
        """One message from the channel: drop the key (or all) in the caches it names."""
        try:
            body = json.loads(raw)
            namespace, key, origin = body["ns"], body.get("k"), body.get("o")
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed cache invalidation message")
            return
        if origin == self.origin:
            return
        for cache in self.caches.get(namespace, ()):
            cache.dropped(key, body.get("g"))

    def _reconnected(self) -> None:
        # redis-py reconnects a subscription by itself (and subscribes again): what was
        # published in between is lost, so the near caches start over.
        self.clear_all()
        log.warning(
            "cache invalidations: reconnected to %s; local caches cleared", masked(self.url)
        )

    def clear_all(self) -> None:
        for group in self.caches.values():
            for cache in group:
                cache.dropped(None, None)

    async def _listen(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            pubsub = _pubsub(self.redis, self._reconnected)
            try:
                await pubsub.subscribe(CHANNEL)
                # Anything published while unsubscribed is lost: start from empty caches.
                self.clear_all()
                await self._refresh_generations()
                if self._outage:
                    log.warning("cache invalidations: subscribed again to %s", masked(self.url))
                self._outage = False
                self._ready.set()
                delay = BACKOFF_FIRST
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        self.apply(message["data"])
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                self.clear_all()
                if not self._outage:
                    log.warning(
                        "cache invalidations: lost the subscription to %s (%s); local caches "
                        "cleared, retrying every %.0f s at most",
                        masked(self.url),
                        type(exc).__name__,
                        BACKOFF_MAX,
                    )
                self._outage = True
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)

    async def _refresh_generations(self) -> None:
        for group in list(self.caches.values()):
            for cache in group:
                await cache.read_generation()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.redis.aclose()


def _pubsub(redis: Any, reconnected: Callable[[], None]) -> Any:
    """A PubSub that calls `reconnected()` whenever redis-py reconnects it (its
    `on_connect` must stay a bound method: connections keep it as a WeakMethod)."""
    from redis.asyncio.client import PubSub

    class NoticingPubSub(PubSub):
        async def on_connect(self, connection: Any) -> None:
            reconnected()
            await super().on_connect(connection)

    return NoticingPubSub(redis.connection_pool, ignore_subscribe_messages=True)


@dataclass
class _LoopHubs:
    """The hubs of one event loop (a hub's tasks and connections belong to its loop)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    by_url: dict[str, Invalidations] = field(default_factory=dict)


# Weak: a loop that is gone takes its entry along (and a new loop never finds its hubs).
_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHubs] = (
    weakref.WeakKeyDictionary()
)


async def invalidations(url: str) -> Invalidations:
    """The process's `Invalidations` for `url` in this event loop (connected, subscribed),
    or a RuntimeFailure naming the masked URL when Redis cannot be reached."""
    loop = asyncio.get_running_loop()
    hubs = _LOOPS.get(loop)
    if hubs is None:
        hubs = _LOOPS[loop] = _LoopHubs()
    async with hubs.lock:
        hub = hubs.by_url.get(url)
        if hub is None:
            hub = Invalidations(await connect(url), url)
            await hub.start()
            hubs.by_url[url] = hub
        hub.users += 1
        return hub


async def release(hub: Invalidations) -> None:
    """One user of `hub` is done; the last one closes it."""
    hub.users -= 1
    if hub.users > 0:
        return
    for hubs in list(_LOOPS.values()):
        if hubs.by_url.get(hub.url) is hub:
            del hubs.by_url[hub.url]
    await hub.aclose()


class RedisCache(Generic[K, V]):
    """A `Cache` whose deletions reach every process; values shared when `codec` is given."""

    def __init__(
        self,
        hub: Invalidations,
        namespace: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.hub = hub
        self.namespace = namespace
        self.ttl = ttl
        self.codec = codec
        # Keyed by str(key): what an invalidation message names, so a drop is O(1).
        self.local: LocalCache[str, V] = LocalCache(capacity=capacity, ttl=ttl)
        self.gen = 0
        self._pending: set[asyncio.Task[None]] = set()
        # Keys `forget` dropped whose Redis copy is still being deleted (None: all of them):
        # reads skip Redis for them until the deletion is done.
        self._hidden: dict[str | None, int] = {}
        self._failing = False
        hub.add(self)

    # ------------------------------------------------------------------ helpers
    def _key(self, key: K) -> str:
        return f"{PREFIX}{self.namespace}:{self.gen}:{key}"

    @property
    def _gen_key(self) -> str:
        return f"{PREFIX}{self.namespace}:gen"

    async def read_generation(self) -> None:
        if self.codec is None:
            return
        raw = await self.hub.redis.get(self._gen_key)
        self.gen = int(raw or 0)

    def dropped(self, key: str | None, gen: int | None) -> None:
        """Another process (or a lost subscription) says `key` (None: all) is stale."""
        if gen is not None:
            self.gen = max(self.gen, int(gen))
        if key is None:
            self.local.clear()
            return
        self.local.drop(key)

    def _trouble(self, what: str, exc: BaseException) -> None:
        if not self._failing:
            log.warning(
                "cache %s: %s failed (%s); using the database until Redis answers",
                self.namespace,
                what,
                type(exc).__name__,
            )
        self._failing = True

    # ------------------------------------------------------------------ Cache
    def peek(self, key: K) -> V | None:
        return self.local.peek(str(key))

    async def get(self, key: K) -> V | None:
        value = self.local.peek(str(key))
        if value is not None or self.codec is None:
            return value
        if self._hidden and (None in self._hidden or str(key) in self._hidden):
            return None
        try:
            raw = await self.hub.redis.get(self._key(key))
        except Exception as exc:
            self._trouble("a read", exc)
            return None
        self._failing = False
        if raw is None:
            return None
        decoded: V = self.codec[1](raw)
        self.local.put(str(key), decoded)
        return decoded

    async def set(self, key: K, value: V, ttl: float | None = None) -> None:
        self.local.put(str(key), value, ttl)
        if self.codec is None:
            return
        life = self.ttl if ttl is None else ttl
        try:
            await self.hub.redis.set(
                self._key(key),
                self.codec[0](value),
                px=None if life is None else max(1, int(life * 1000)),
            )
        except Exception as exc:
            self._trouble("a write", exc)
            return
        self._failing = False

    async def get_or_load(
        self, key: K, load: Callable[[], Awaitable[V]], ttl: float | None = None
    ) -> V:
        """The cached value, or `load()`'s, cached unless the key was invalidated while
        it loaded (then the value is returned but not kept: it may predate the change)."""
        value = await self.get(key)
        if value is not None:
            return value
        epoch = self.local.epoch
        value = await load()
        if epoch == self.local.epoch:
            await self.set(key, value, ttl)
        return value

    async def delete(self, key: K) -> None:
        self.local.drop(str(key))
        try:
            if self.codec is not None:
                await self.hub.redis.delete(self._key(key))
            await self.hub.publish(self.namespace, str(key))
        except Exception as exc:
            self._trouble("an invalidation", exc)

    async def invalidate(self) -> None:
        self.local.clear()
        try:
            gen = None
            if self.codec is not None:
                gen = int(await self.hub.redis.incr(self._gen_key))
                self.gen = max(self.gen, gen)
            await self.hub.publish(self.namespace, None, gen)
        except Exception as exc:
            self._trouble("an invalidation", exc)

    def forget(self, key: K | None = None) -> None:
        name = None if key is None else str(key)
        if key is None:
            self.local.clear()
        else:
            self.local.drop(str(key))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a library caller): the TTL covers the others
            return
        if len(self._pending) >= MAX_PENDING:
            self._trouble("an invalidation (too many under way)", OverflowError())
            return
        self._hidden[name] = self._hidden.get(name, 0) + 1
        task = loop.create_task(self._broadcast(key))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _broadcast(self, key: K | None) -> None:
        name = None if key is None else str(key)
        try:
            if key is None:
                await self.invalidate()
            else:
                await self.delete(key)
        finally:
            left = self._hidden.get(name, 1) - 1
            if left > 0:
                self._hidden[name] = left
            else:
                self._hidden.pop(name, None)

    async def settled(self) -> None:
        """Wait for the broadcasts `forget` started (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.settled()
        self.hub.remove(self)
        self.local.clear()
        await release(self.hub)

    def __len__(self) -> int:
        return len(self.local)


async def open_cache(
    url: str,
    namespace: str,
    *,
    capacity: int = DEFAULT_CAPACITY,
    ttl: float | None = None,
    codec: Codec | None = None,
) -> RedisCache[Any, Any]:
    """A RedisCache on the process's shared subscription for `url`."""
    hub = await invalidations(url)
    cache: RedisCache[Any, Any] = RedisCache(
        hub, namespace, capacity=capacity, ttl=ttl, codec=codec
    )
    if codec is not None:
        try:
            await cache.read_generation()
        except Exception as exc:
            cache._trouble("reading the generation", exc)
    return cache
