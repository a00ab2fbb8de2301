"""The Redis parts of the scale-out backend: the change bus and the session read-through cache.

Redis accelerates and is never the only copy of anything: while it is down, sessions are read
from the database, the bus reports `connected = False`, and both recover by themselves.
"""

from gateway.storage.redis.bus import BUS_DISCONNECTED, BUS_RESYNC, RedisChangeBus
from gateway.storage.redis.client import RedisHandle, open_redis
from gateway.storage.redis.health import Breaker, status
from gateway.storage.redis.sessions import RedisSessionCache

__all__ = [
    "BUS_DISCONNECTED",
    "BUS_RESYNC",
    "Breaker",
    "RedisChangeBus",
    "RedisHandle",
    "RedisSessionCache",
    "open_redis",
    "status",
]
