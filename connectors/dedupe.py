"""Platform message ids: each delivery is processed exactly once, and only marked done once stored.

A delivery is first *claimed* with a short lease (``lease:<token>``, two
minutes): a redelivery meanwhile is told it is in progress, so the platform
tries again later. Once its turn is stored the id is marked
``done:<conversation id>`` (the tracker store does it in the same Lua script
as the save), and ``sent`` once the pipeline finished the turn, replies
included; from then on a redelivery is a duplicate. A failure before the save
releases the lease, so the platform's retry processes the message; a crashed
process's lease simply expires.

On a channel whose replies are held until the save
(``connectors.reply_outbox``), a redelivery that finds ``done:`` (stored, the
replies maybe not sent) is told ``unsent`` with the conversation id, under a
resend lease of its own (``keys.dedupe_resend``), so one process resends
them.
"""
from typing import Any, NamedTuple, Optional

from threadline import identity, limits

LEASE_SECONDS = 120

# KEYS: dedupe key, the sender's rate-limit counter, the resend lease. ARGV:
# lease seconds, lease token, window seconds, limit, "1" if the channel's
# replies are held until the save. A new delivery is counted against the
# sender's budget (``threadline.limits``' fixed window) and claimed only if
# within it: one round trip instead of two, and a duplicate is never counted.
_CLAIM_WITHIN_LUA = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 5) == 'done:' and ARGV[5] == '1' then
    if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[1]) then return {'unsent', 0, 0, string.sub(v, 6)} end
    return {'in_progress', 0, 0}
  end
  if v == 'sent' or string.sub(v, 1, 4) == 'done' then return {'duplicate', 0, 0} end
  return {'in_progress', 0, 0}
end
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


class Claim(NamedTuple):
    """What ``claim_within`` found."""

    outcome: str  # claimed | duplicate | in_progress | limited | unsent
    count: int  # the sender's messages this window (when counted)
    retry_after: int
    conversation_id: Optional[str] = None  # ``unsent``: whose stored turn holds the replies


def claim_within(
    redis: Any, key: str, lease: str, limit_key: str, window: int, limit: int, resend_key: str,
    held_replies: bool = False,
) -> Claim:
    """Claim a delivery: ``claimed``, ``duplicate``, ``in_progress``, ``limited`` (not claimed), or ``unsent``.

    ``unsent`` (only with ``held_replies``): the turn is stored, its replies
    maybe not sent; the resend lease ``resend_key`` is now ``lease``'s.
    """
    script = identity.script(redis, "dedupe-claim-within", _CLAIM_WITHIN_LUA)
    found = script(
        keys=[key, limit_key, resend_key],
        args=[LEASE_SECONDS, f"lease:{lease}", window, limit, "1" if held_replies else "0"],
        client=redis,
    )
    conversation = identity.text(found[3]) if len(found) > 3 else None
    return Claim(identity.text(found[0]), int(found[1]), max(1, int(found[2])), conversation)


def release(redis: Any, key: str, lease: str) -> None:
    """Give a claim or a resend lease up, if it is still ``lease``'s (a given-up resend leaves ``done:``)."""
    identity.script(redis, "dedupe-release", _RELEASE_LUA)(keys=[key], args=[f"lease:{lease}"], client=redis)


def done(redis: Any, key: str, ttl: int) -> None:
    """The delivery's turn is stored and its replies sent."""
    redis.set(key, "sent", ex=ttl)


def resent(redis: Any, key: str, resend_key: str, ttl: int) -> None:
    """The stored turn's replies went out again: ``sent``, and the resend lease given up."""
    pipe = redis.pipeline(transaction=False)
    pipe.set(key, "sent", ex=ttl)
    pipe.delete(resend_key)
    pipe.execute()

