"""The Redis adapter of `RateLimitStore`: one Lua call per request, on Redis' clock.

Every decision runs inside one Lua script that reads `redis.call('TIME')`, so all gateway
replicas share one clock and one budget, and a check is atomic. Scripts are loaded once
(`SCRIPT LOAD`) and run by SHA with a raw `EVALSHA` (a redis-py `Script` object would add a
`SCRIPT EXISTS` round trip); on `NOSCRIPT` (a restarted or flushed Redis) they are reloaded.

Keys: buckets `<prefix>rl:<key>` (the TAT in µs, `PX` = time until the bucket is idle),
failure counters `<prefix>rlp:<key>` (a hash `n`, `last`; `PX` = the decay). The keys of one
`check_many` must live on one node (no Redis Cluster slot spreading).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from gateway.ratelimit.gcra import MICROS, RateResult, emission_interval
from gateway.ratelimit.penalty import PenaltyPolicy
from gateway.ratelimit.stores import RateCheck

GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, tats, all_ok = {}, {}, true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local stored = tonumber(redis.call('GET', KEYS[i]))
  local base = now
  if stored and stored > now then base = stored end
  local new_tat = base + cost * interval
  local allow_at = new_tat - burst * interval
  local o = 4 * i
  if now < allow_at then
    all_ok = false
    out[o - 3], out[o - 2], out[o - 1], out[o] = 0, 0, allow_at - now, base - now
  else
    tats[i] = new_tat
    local remaining = math.floor((now - allow_at) / interval)
    out[o - 3], out[o - 2], out[o - 1], out[o] = 1, remaining, 0, new_tat - now
  end
end
if all_ok then
  for i = 1, #KEYS do
    if tats[i] > now then
      local ttl = math.ceil((tats[i] - now) / 1000)
      redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', ttl)
    end
  end
end
return out
"""

PENALTY_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local threshold, base = tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, decay = tonumber(ARGV[4]), tonumber(ARGV[5])
local count, last
if ARGV[1] == 'fail' then
  count = redis.call('HINCRBY', KEYS[1], 'n', 1)
  last = now
  redis.call('HSET', KEYS[1], 'last', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(decay / 1000)))
else
  local v = redis.call('HMGET', KEYS[1], 'n', 'last')
  count, last = tonumber(v[1]), tonumber(v[2])
  if not count or not last then return 0 end
end
if count < threshold or now - last >= decay then return 0 end
local delay = math.min(base * 2 ^ math.min(count - threshold, 40), cap)
local wait = last + delay - now
if wait < 0 then return 0 end
return wait
"""


class RedisClient(Protocol):
    """What the store needs of a `redis.asyncio.Redis` (or a cluster-less equivalent)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...


class LuaScript:
    """A script run by SHA with raw `EVALSHA`, loaded on first use and after `NOSCRIPT`."""

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._source = source
        self._sha: str | None = None

    async def _load(self) -> str:
        sha = await self._client.execute_command("SCRIPT", "LOAD", self._source)
        self._sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        return self._sha

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """The script's reply; one round trip except right after a (re)load."""
        sha = self._sha or await self._load()
        try:
            return await self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            sha = await self._load()
            return await self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)


class RedisRateLimitStore:
    """`RateLimitStore` on Redis, shared by every replica using the same Redis and `prefix`."""

    def __init__(self, client: RedisClient, prefix: str = "gw:") -> None:
        self._prefix = prefix
        self._gcra = LuaScript(client, GCRA_LUA)
        self._penalty = LuaScript(client, PENALTY_LUA)
        self._client = client

    async def check(self, key: str, per_second: float, burst: int, cost: int = 1) -> RateResult:
        return (await self.check_many([RateCheck(key, per_second, burst, cost)]))[0]

    async def check_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        if not checks:
            return []
        for c in checks:
            if c.burst < 1 or c.cost < 0:
                raise ValueError("burst must be ≥ 1 and cost ≥ 0")
        keys = [f"{self._prefix}rl:{c.key}" for c in checks]
        args: list[str | int] = []
        for c in checks:
            args += [emission_interval(c.per_second), c.burst, c.cost]
        reply = [int(v) for v in await self._gcra(keys, args)]
        return [
            RateResult(
                allowed=reply[4 * i] == 1,
                limit=c.burst,
                remaining=reply[4 * i + 1],
                retry_after=reply[4 * i + 2] / MICROS,
                reset_after=reply[4 * i + 3] / MICROS,
            )
            for i, c in enumerate(checks)
        ]

    def _penalty_args(self, mode: str, policy: PenaltyPolicy) -> list[str | int]:
        return [mode, policy.threshold, policy.base_us, policy.cap_us, policy.decay_us]

    async def penalty_wait(self, key: str, policy: PenaltyPolicy) -> float:
        keys = [f"{self._prefix}rlp:{key}"]
        return int(await self._penalty(keys, self._penalty_args("check", policy))) / MICROS

    async def add_failure(self, key: str, policy: PenaltyPolicy) -> float:
        keys = [f"{self._prefix}rlp:{key}"]
        return int(await self._penalty(keys, self._penalty_args("fail", policy))) / MICROS

    async def clear_failures(self, key: str) -> None:
        await self._client.execute_command("DEL", f"{self._prefix}rlp:{key}")
