"""Opening Redis for the scale-out backend: one client, fail-fast settings, prefixed keys.

Guarantees:

* every command gives up within `timeout` seconds (connect and reply) and is never retried
  by the client, so a caller on the hot path learns of an outage within that bound and falls
  back to the database (Redis is an accelerator, never the record);
* every key and channel this package uses is `handle.key(name)`, i.e. starts with the
  handle's prefix, so several deployments (or test runs) can share one Redis;
* the URL, which may hold a password, is neither logged nor kept in any `repr`;
* Lua scripts run as a raw `EVALSHA` (falling back to `EVAL` once after a script-cache
  flush), never through redis-py `Script` objects, which add a `SCRIPT EXISTS` round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

DEFAULT_TIMEOUT = 0.5  # seconds: loopback round trips are ~0.1 ms, so this is only outages
HEALTH_CHECK_INTERVAL = 30  # seconds a pooled connection may idle before a PING re-checks it

# What a Redis outage looks like from redis-py: its own errors, socket errors, timeouts.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script and its SHA-1, for raw `EVALSHA`."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


class RedisHandle:
    """A redis.asyncio client plus the key prefix of this deployment."""

    def __init__(self, client: Redis, prefix: str) -> None:
        if not prefix:
            raise ValueError("a Redis key prefix is required")
        self.client = client
        self.prefix = prefix

    def __repr__(self) -> str:
        # SECURITY: the client's repr names the connection; keep the URL out of logs.
        return f"RedisHandle(prefix={self.prefix!r})"

    def key(self, name: str) -> str:
        """The full key (or channel) name for `name`: always under this handle's prefix."""
        return self.prefix + name

    async def ping(self) -> bool:
        """True when Redis answers PING within the timeout (readiness; never raises)."""
        try:
            return bool(await self.client.ping())
        except REDIS_ERRORS:
            return False

    async def run_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Any:
        """Runs `script` in one round trip (two only right after Redis lost its scripts)."""
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(script.source, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Closes the client and its connection pool."""
        await self.client.aclose()


def open_redis(
    url: str,
    *,
    prefix: str,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int | None = None,
) -> RedisHandle:
    """A handle on the Redis at `url` (no connection is made until the first command).

    Commands are not retried: a caller on the hot path falls back to the database instead
    of waiting for a second attempt.
    """
    client = Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=max_connections,
        client_name="gateway",
    )
    return RedisHandle(client, prefix)
