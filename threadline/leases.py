"""A Redis lease: one process of many does a job at a time (the event relay, the analytics consumer, the journey worker on SQLite).

The holder renews it while it works; when it stops, the lease expires and
another process takes over. Take-or-renew and release are each one Lua
script, so two processes never both hold it.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Optional

# KEYS: lease. ARGV: owner, milliseconds. Take the lease if free, renew it if ours.
LEASE_LUA = """
local owner = redis.call('GET', KEYS[1])
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# KEYS: lease. ARGV: owner. Give the lease up if ours.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """The lease at ``key`` (a ``threadline.keys.Keys`` name), held for ``ms`` milliseconds at a time."""

    def __init__(self, key: Callable[[], str], ms: int, owner: Optional[str] = None, redis: Any = None) -> None:
        self.key = key
        self.ms = int(ms)
        self.owner = owner or f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._redis = redis

    def redis(self) -> Any:
        """The Redis client (the shared one unless one was injected)."""
        from threadline import redis_client

        return self._redis if self._redis is not None else redis_client.get_client()

    def hold(self) -> bool:
        """Take or renew the lease; whether this process holds it (blocking)."""
        return bool(self.redis().eval(LEASE_LUA, 1, self.key(), self.owner, self.ms))

    def release(self) -> None:
        """Give the lease up if it is ours (blocking)."""
        self.redis().eval(RELEASE_LUA, 1, self.key(), self.owner)
