"""The API's per-key rate limit shared by every `carrier serve` on one Redis.

The same token bucket as `clients.api.limits.RateLimiter` (`per_minute` tokens, refilled
continuously, a burst of the same size), kept in a Redis hash per key name and updated by
one Lua script, so reading, refilling and taking a token is atomic across processes. The
script reads Redis's own clock (`TIME`): servers whose clocks disagree still share one
bucket. Each bucket expires once it would be full again, so Redis holds only the buckets
of keys used in the last minute or so.

When Redis does not answer, the request is decided by the process's own bucket instead
(logged once per outage): a Redis outage then loosens the limit to one budget per server
rather than refusing every request or letting them all through. Failed key checks
(`AuthFailures`) stay per process: they guard this process's CPU against hashing floods.
"""

from __future__ import annotations

import logging
from typing import Any

from carrier_cli.clients.api.limits import Decision, RateLimiter
from carrier_cli.cluster.cache import Invalidations, invalidations, release

log = logging.getLogger("carrier.cluster.rate_limit")

KEY_PREFIX = "carrier:ratelimit:"

# KEYS[1]: the bucket; ARGV[1]: capacity (tokens), ARGV[2]: refill rate (tokens/s).
# Returns {allowed (0/1), tokens left as a string (Lua numbers would be truncated)}.
TAKE = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = tonumber(saved[1])
local at = tonumber(saved[2])
if tokens == nil or at == nil then
  tokens = cap
  at = now
end
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter(RateLimiter):
    """`RateLimiter` whose buckets live in Redis; the local ones are the outage fallback."""

    def __init__(self, per_minute: int, hub: Invalidations) -> None:
        super().__init__(per_minute)
        self.hub = hub
        self._script: Any = hub.redis.register_script(TAKE)
        self._failing = False

    async def acheck(self, name: str) -> Decision:
        if not self.enabled:
            return self.check(name)
        try:
            allowed, left = await self._script(
                keys=[f"{KEY_PREFIX}{name}"], args=[self.per_minute, self.rate]
            )
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "rate limit: Redis did not answer (%s); each server counts its own "
                    "requests until it does",
                    type(exc).__name__,
                )
            self._failing = True
            return self.check(name)
        if self._failing:
            log.warning("rate limit: Redis answers again; the budget is shared again")
        self._failing = False
        tokens = float(left.decode() if isinstance(left, bytes) else left)
        return self.verdict(name, self._decision(bool(int(allowed)), tokens))

    async def aclose(self) -> None:
        await release(self.hub)


async def open_rate_limiter(url: str, per_minute: int) -> RedisRateLimiter:
    """The shared limiter on the process's Redis connection for `url`."""
    return RedisRateLimiter(per_minute, await invalidations(url))
