"""Platform message ids: each delivery is processed exactly once, and only marked done once stored.

A delivery is first *claimed* with a short lease (``lease:<token>``, two
minutes): a redelivery meanwhile is told it is in progress, so the platform
tries again later. Once its turn is stored the id is marked ``done`` (the
tracker store does it in the same Lua script as the save, the pipeline again
afterwards), and from then on a redelivery is a duplicate. A failure before
that releases the lease, so the platform's retry processes the message; a
crashed process's lease simply expires.
"""
from typing import Any, Tuple

from threadline import identity, limits

LEASE_SECONDS = 120

# KEYS: dedupe key, the sender's rate-limit counter. ARGV: lease seconds, lease
# token, window seconds, limit. A new delivery is counted against the
# sender's budget (``threadline.limits``' fixed window) and claimed only if
# within it: one round trip instead of two, and a duplicate is never counted.
_CLAIM_WITHIN_LUA = """
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {'duplicate', 0, 0} end
if v then return {'in_progress', 0, 0} end
""" + limits.count_lua("KEYS[2]", "ARGV[3]", "1") + """
if count > tonumber(ARGV[4]) then return {'limited', count, ttl} end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return {'claimed', count, ttl}
"""
# KEYS: dedupe key. ARGV: lease token. Deletes the lease only if it is still ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def claim_within(redis: Any, key: str, lease: str, limit_key: str, window: int, limit: int) -> Tuple[str, int, int]:
    """(outcome, count, retry after): ``claimed``, ``duplicate``, ``in_progress``, or ``limited`` (not claimed)."""
    script = identity.script(redis, "dedupe-claim-within", _CLAIM_WITHIN_LUA)
    outcome, count, ttl = script(keys=[key, limit_key], args=[LEASE_SECONDS, f"lease:{lease}", window, limit],
                                 client=redis)
    return identity.text(outcome), int(count), max(1, int(ttl))


def release(redis: Any, key: str, lease: str) -> None:
    """Give a claim up, if it is still ``lease``'s."""
    identity.script(redis, "dedupe-release", _RELEASE_LUA)(keys=[key], args=[f"lease:{lease}"], client=redis)


def done(redis: Any, key: str, ttl: int) -> None:
    """The delivery's turn is stored."""
    redis.set(key, "done", ex=ttl)
