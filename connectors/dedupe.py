"""Platform message ids: each delivery is processed exactly once, and only marked done once stored.

A delivery is first *claimed* with a short lease (``lease:<token>``, two
minutes): a redelivery meanwhile is told it is in progress, so the platform
tries again later. Once its turn is stored the id is marked ``done`` (the
tracker store does it in the same Lua script as the save, the pipeline again
afterwards), and from then on a redelivery is a duplicate. A failure before
that releases the lease, so the platform's retry processes the message; a
crashed process's lease simply expires.
"""
from typing import Any

from threadline import identity

LEASE_SECONDS = 120

# KEYS: dedupe key. ARGV: lease seconds, lease token.
_CLAIM_LUA = """
local v = redis.call('GET', KEYS[1])
if v == 'done' then return 'duplicate' end
if v then return 'in_progress' end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return 'claimed'
"""
# KEYS: dedupe key. ARGV: lease token. Deletes the lease only if it is still ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def claim(redis: Any, key: str, lease: str) -> str:
    """``claimed``, ``duplicate`` or ``in_progress`` for the delivery id ``key``."""
    script = identity.script(redis, "dedupe-claim", _CLAIM_LUA)
    return identity.text(script(keys=[key], args=[LEASE_SECONDS, f"lease:{lease}"], client=redis))


def release(redis: Any, key: str, lease: str) -> None:
    """Give a claim up, if it is still ``lease``'s."""
    identity.script(redis, "dedupe-release", _RELEASE_LUA)(keys=[key], args=[f"lease:{lease}"], client=redis)


def done(redis: Any, key: str, ttl: int) -> None:
    """The delivery's turn is stored."""
    redis.set(key, "done", ex=ttl)
