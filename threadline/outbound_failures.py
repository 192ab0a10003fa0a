"""Messages that could not be delivered: kept for a while, then replayed once or dropped.

Each failure is one Redis string ``{p}:outbound:failed:{id}`` (the channel,
the customer id, the channel-neutral response as Rasa produced it, the error;
never the platform address or body; personal values in it are scrubbed to
typed placeholders, ``threadline.pii``) that expires after
``OUTBOUND_FAILED_TTL_DAYS``, indexed by time in the sorted set
``{p}:outbound:failed``. ``claim`` removes an entry from the index atomically,
so two replays never send the same message twice; a replay that fails again
records a new entry.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

from threadline import pii, redis_client
from threadline import settings as settings_module
from threadline.keys import Keys


@dataclass(frozen=True)
class Failure:
    """One undelivered response."""

    id: str
    channel: str
    customer_id: str
    message: Dict[str, Any]
    error: str
    at: float
    attempts: int = 1


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


def _ttl() -> int:
    return settings_module.get().integer("OUTBOUND_FAILED_TTL_DAYS") * 86400


def record(channel: str, customer_id: str, message: Dict[str, Any], error: str, *,
           attempts: int = 1, redis: Any = None) -> Failure:
    """Keep one undelivered response (blocking)."""
    r = _redis(redis)
    keys = Keys()
    failure = Failure(secrets.token_hex(8), channel, customer_id, pii.scrub_value(dict(message)),
                      pii.scrub(error[:500]), time.time(), attempts)
    ttl = _ttl()
    pipe = r.pipeline(transaction=True)
    pipe.set(keys.outbound_failed_item(failure.id), json.dumps(asdict(failure), default=str), ex=ttl)
    pipe.zadd(keys.outbound_failed(), {failure.id: failure.at})
    pipe.zremrangebyscore(keys.outbound_failed(), "-inf", failure.at - ttl)
    pipe.execute()
    return failure


def pending(limit: int = 1000, redis: Any = None) -> List[Failure]:
    """The kept failures, oldest first (expired ones are skipped)."""
    r = _redis(redis)
    keys = Keys()
    ids = [i.decode() if isinstance(i, bytes) else i for i in r.zrange(keys.outbound_failed(), 0, limit - 1)]
    found = []
    for item_id in ids:
        raw = r.get(keys.outbound_failed_item(item_id))
        if raw is not None:
            found.append(Failure(**json.loads(raw)))
    return found


def claim(item_id: str, redis: Any = None) -> Optional[Failure]:
    """Take one failure for replaying; None if it expired or another replay has it."""
    r = _redis(redis)
    keys = Keys()
    if not r.zrem(keys.outbound_failed(), item_id):
        return None
    raw = r.getdel(keys.outbound_failed_item(item_id))
    return Failure(**json.loads(raw)) if raw is not None else None


def count(redis: Any = None) -> int:
    """How many failures are kept."""
    r = _redis(redis)
    keys = Keys()
    r.zremrangebyscore(keys.outbound_failed(), "-inf", time.time() - _ttl())
    return int(r.zcard(keys.outbound_failed()))
