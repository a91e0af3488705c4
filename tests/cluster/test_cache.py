"""The cache interface: the in-process LocalCache and the Redis one pass the same contract
tests; with a real Redis, an invalidation through one client is seen through another at
once, values and generations are shared, and the rate-limit bucket is one across limiters.
The end-to-end checks over two real `carrier serve` processes are in test_cache_serve.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.cache import LocalCache
from carrier_cli.clients.api.errors import ApiError
from tests.support.redis_server import RedisServer, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.service]

TEXT = (lambda v: str(v).encode(), lambda raw: raw.decode())  # a codec for str values


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


async def hub(url: str) -> Any:
    """A separate connection and subscription, as another process would have."""
    from carrier_cli.cluster.cache import Invalidations
    from carrier_cli.cluster.redis_client import connect

    made = Invalidations(await connect(url), url)
    await made.start()
    return made


CacheFactory = Callable[..., Any]


@pytest.fixture(params=["local", "redis", "redis-values"])
async def make_cache(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[CacheFactory]:
    """Builds caches of one implementation; each test gets its own namespace."""
    made: list[Any] = []
    hubs: list[Any] = []

    async def factory(**options: Any) -> Any:
        if request.param == "local":
            cache: Any = LocalCache(**options)
        else:
            from carrier_cli.cluster.cache import RedisCache

            if not hubs:
                hubs.append(await hub(redis_server.url))
            codec = TEXT if request.param == "redis-values" else None
            namespace = f"{request.node.name}:{len(made)}:{time.monotonic_ns()}"
            cache = RedisCache(hubs[0], namespace, codec=codec, **options)
            await cache.read_generation()
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        if hasattr(cache, "settled"):
            await cache.settled()
    for h in hubs:
        await h.aclose()


# ---------------------------------------------------------------------- the contract
async def test_get_set_delete(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    assert await cache.get("a") is None
    await cache.set("a", "one")
    await cache.set("b", "two")
    assert await cache.get("a") == "one"
    assert cache.peek("a") == "one"  # held here: the hot path's synchronous hit
    await cache.delete("a")
    assert await cache.get("a") is None
    assert cache.peek("a") is None
    assert await cache.get("b") == "two"


async def test_invalidate_drops_every_key(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    for key in "abc":
        await cache.set(key, key.upper())
    await cache.invalidate()
    assert [await cache.get(k) for k in "abc"] == [None, None, None]
    await cache.set("a", "again")  # usable after an invalidation
    assert await cache.get("a") == "again"


async def test_entries_expire_after_their_ttl(make_cache: CacheFactory) -> None:
    cache = await make_cache(ttl=30.0)
    await cache.set("short", "x", ttl=0.6)
    await cache.set("default", "y")
    assert await cache.get("short") == "x"
    await asyncio.sleep(0.8)
    assert await cache.get("short") is None
    assert await cache.get("default") == "y"


async def test_get_or_load_loads_once(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    loads: list[str] = []

    async def load() -> str:
        loads.append("x")
        return "loaded"

    assert await cache.get_or_load("k", load) == "loaded"
    assert await cache.get_or_load("k", load) == "loaded"
    assert loads == ["x"]


async def test_a_load_racing_an_invalidation_is_not_kept(make_cache: CacheFactory) -> None:
    """The value was read before the change: returned, but the next read loads again."""
    cache = await make_cache()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "old"

    loading = asyncio.create_task(cache.get_or_load("k", slow))
    await started.wait()
    await cache.delete("k")
    release.set()
    assert await loading == "old"

    async def fresh() -> str:
        return "new"

    assert await cache.get_or_load("k", fresh) == "new"


async def test_forget_drops_here_at_once(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    await cache.set("a", "1")
    await cache.set("b", "2")
    cache.forget("a")  # synchronous: no await between it and the read
    assert await cache.get("a") is None
    assert await cache.get("b") == "2"
    cache.forget()
    assert await cache.get("b") is None


async def test_capacity_bounds_the_entries_held_here(make_cache: CacheFactory) -> None:
    cache = await make_cache(capacity=3)
    for i in range(10):
        await cache.set(f"k{i}", str(i))
    assert len(cache) == 3  # the process holds at most `capacity`
    assert await cache.get("k9") == "9"


def test_local_cache_evicts_the_least_recently_used() -> None:
    cache: LocalCache[str, int] = LocalCache(capacity=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.peek("a") == 1 and cache.peek("c") == 3


# ---------------------------------------------------------------------- across clients
async def eventually(check: Callable[[], Any], within: float = 5.0) -> float:
    """Seconds until `check()` (awaited when needed) is true; fails after `within`."""
    start = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - start
        assert time.monotonic() - start < within, "not seen in time"
        await asyncio.sleep(0.002)


async def test_an_invalidation_is_seen_by_another_client_at_once(
    redis_server: RedisServer,
) -> None:
    from carrier_cli.cluster.cache import RedisCache

    one, two = await hub(redis_server.url), await hub(redis_server.url)
    try:
        a: RedisCache[str, str] = RedisCache(one, "facts:shared", ttl=60)
        b: RedisCache[str, str] = RedisCache(two, "facts:shared", ttl=60)
        other: RedisCache[str, str] = RedisCache(two, "facts:other", ttl=60)
        await a.set("ada", "likes tea")
        await b.set("ada", "likes tea")  # each process holds its own copy (near cache)
        await b.set("bob", "likes jazz")
        await other.set("ada", "unrelated")
        await a.delete("ada")
        # Pushed, not expired: the entries live 60 s, the deletion is seen within seconds
        # (a few ms on a quiet machine; no figure is asserted, a busy one takes longer).
        await eventually(lambda: b.local.peek("ada") is None)
        assert await b.get("bob") == "likes jazz"  # only the named key went
        assert await other.get("ada") == "unrelated"  # and only in that namespace
        a.forget()  # the synchronous form, as runtime.forget_facts uses
        await eventually(lambda: b.local.peek("bob") is None)
        await a.settled()
    finally:
        await one.aclose()
        await two.aclose()


async def test_values_and_invalidations_are_shared(redis_server: RedisServer) -> None:
    from carrier_cli.cluster.cache import RedisCache

    one, two = await hub(redis_server.url), await hub(redis_server.url)
    try:
        a: RedisCache[str, str] = RedisCache(one, "vectors:shared", ttl=60, codec=TEXT)
        b: RedisCache[str, str] = RedisCache(two, "vectors:shared", ttl=60, codec=TEXT)
        await a.set("k", "computed once")
        assert await b.get("k") == "computed once"  # from Redis, then held by b
        await a.invalidate()  # a new generation: b's copy and the Redis key are retired
        await eventually(lambda: b.local.peek("k") is None)
        assert await b.get("k") is None
        assert b.gen == a.gen >= 1
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_lost_subscription_clears_the_near_cache(tmp_path: Path) -> None:
    """Pub/sub loses what is sent while unsubscribed: after a Redis restart the cache
    starts empty rather than serving what may have changed meanwhile."""
    from carrier_cli.cluster.cache import RedisCache

    server = start_redis(tmp_path)
    if server.process is None:
        pytest.skip("an external Redis cannot be restarted")
    one = await hub(server.url)
    try:
        cache: RedisCache[str, str] = RedisCache(one, "facts:restart", ttl=60)
        await cache.set("ada", "likes tea")
        server.restart()
        await eventually(lambda: cache.local.peek("ada") is None, within=10)
        # Resubscribed: a deletion from another client reaches it again.
        await eventually(lambda: not one._outage and one._ready.is_set(), within=10)
        two = await hub(server.url)
        try:
            await cache.set("bob", "likes jazz")
            await RedisCache(two, "facts:restart").delete("bob")
            await eventually(lambda: cache.local.peek("bob") is None)
        finally:
            await two.aclose()
    finally:
        await one.aclose()
        server.stop()


async def test_the_rate_limit_bucket_is_shared(redis_server: RedisServer) -> None:
    from carrier_cli.cluster.rate_limit import RedisRateLimiter

    one, two = await hub(redis_server.url), await hub(redis_server.url)
    try:
        a, b = RedisRateLimiter(3, one), RedisRateLimiter(3, two)
        name = f"key-{time.monotonic_ns()}"
        first = await a.acheck(name)
        assert first.allowed and first.remaining == 2 and first.limit == 3
        await a.acheck(name)
        third = await b.acheck(name)
        assert third.remaining == 0
        with pytest.raises(ApiError) as refused:
            await b.acheck(name)
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert (await a.acheck(f"{name}-other")).allowed  # per key
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_rate_limit_falls_back_to_this_process_when_redis_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis outage loosens the limit to one budget per server: requests are still
    decided (and limited), not refused or let through unbounded."""
    from carrier_cli.cluster.rate_limit import RedisRateLimiter

    server = start_redis(tmp_path)
    if server.process is None:
        pytest.skip("an external Redis cannot be stopped")
    one = await hub(server.url)
    try:
        limiter = RedisRateLimiter(2, one)
        assert (await limiter.acheck("k")).remaining == 1
        server.stop()
        with caplog.at_level("WARNING", logger="carrier.cluster.rate_limit"):
            assert (await limiter.acheck("k")).allowed  # the local bucket: 2 of its own
            assert (await limiter.acheck("k")).allowed
            with pytest.raises(ApiError):
                await limiter.acheck("k")
        warned = [r for r in caplog.records if "did not answer" in r.getMessage()]
        assert len(warned) == 1  # once per outage, not per request
    finally:
        server.stop()
        await one.aclose()


async def test_forget_without_an_event_loop_still_drops_here(redis_server: RedisServer) -> None:
    from carrier_cli.cluster.cache import RedisCache

    one = await hub(redis_server.url)
    try:
        cache: RedisCache[str, str] = RedisCache(one, "facts:noloop")
        await cache.set("a", "1")
        await asyncio.to_thread(cache.forget, "a")  # a thread has no running loop
        assert cache.local.peek("a") is None
    finally:
        await one.aclose()


async def test_caches_of_one_process_share_one_subscription(redis_server: RedisServer) -> None:
    """Each character's cache uses the process's one connection and subscription; the
    last one closed ends it."""
    from carrier_cli.cluster.cache import open_cache

    first = await open_cache(redis_server.url, "facts:one")
    second = await open_cache(redis_server.url, "facts:two")
    try:
        assert first.hub is second.hub and first.hub.users == 2
        numsub = await first.hub.redis.pubsub_numsub("carrier:cache:invalidate")
        before = int(numsub[0][1])
    finally:
        await first.aclose()
    assert second.hub.users == 1 and second.hub._task is not None
    assert not second.hub._task.done()  # still serving the other cache
    await second.aclose()
    assert second.hub._task.done()
    third = await open_cache(redis_server.url, "facts:three")  # a fresh hub, works again
    try:
        assert third.hub is not second.hub and before >= 1
    finally:
        await third.aclose()
