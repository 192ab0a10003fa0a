"""Who owns which personal data, and step-up for everyone else.

The policy, in one place:

* An **order's status** ("on its way") is told to anyone who has the number.
* Its **carrier, tracking number, expected delivery and delivery address** are
  personal: shown to the order's owner (the business customer linked to the
  channel identity by a verified phone or a signed web identity, see
  ``owner_for``), or to a channel identity that passed step-up for that very
  order (the postal code it is delivered to).
* An **appointment** (listing, moving, cancelling) is shown to the channel
  identity that booked it, to a verified identity of the same customer, or
  after step-up for that appointment (its reference and the email it was
  booked with).
* **What the conversation already holds** (what the customer said, what an
  agent wrote) is repeated only to identities that reached the conversation
  through their own channel, never to a voice caller id matched to someone
  else's customer (``TurnMetadata.may_see_conversation_data``).

Step-up state belongs to the channel identity, not the conversation, and
expires (30 minutes, or with the call). Wrong answers are counted per record
and per source across conversations: after ``STEPUP_FAIL_LIMIT`` the record's
step-up is locked for ``STEPUP_LOCK_SECONDS`` and the customer is offered a
person.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Optional

from threadline import redis_client
from threadline import settings as settings_module
from threadline.keys import Keys
from threadline.limits import Budget

logger = logging.getLogger(__name__)

PASS_TTL = 30 * 60
OWNER_CACHE_TTL = 3600
NO_OWNER_TTL = 300
PERSONAL_ORDER_FIELDS = ("carrier", "tracking_number", "expected_delivery", "shipping_address")


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


def _hash(value: str) -> str:
    pepper = settings_module.get().secret("id_pepper")
    return hashlib.blake2b(value.encode(), key=pepper.encode()[:64], digest_size=16).hexdigest()


def owner_for(*, phone: Optional[str] = None, web_ref: Optional[str] = None, redis: Any = None) -> Optional[int]:
    """The business customer with this verified phone (E.164) or web ref, cached in Redis.

    Blocking; runs in the connector pipeline, once per hour per identifier.
    """
    if not phone and not web_ref:
        return None
    subject = f"phone:{phone}" if phone else f"ref:{web_ref}"
    r = _redis(redis)
    key = Keys().identity("owner", _hash(subject))
    cached = r.get(key)
    if cached is not None:
        value = int(cached)
        return value or None
    from threadline.db import queries

    try:
        found = queries.business_customer_id(phone=phone, web_ref=web_ref)
    except Exception:  # the database is down or not set up: no owner, so step-up (fails closed)
        logger.exception("could not look up the business customer; personal data needs step-up meanwhile")
        return None
    r.set(key, str(found or 0), ex=OWNER_CACHE_TTL if found else NO_OWNER_TTL)
    return found


@dataclass(frozen=True)
class StepUpResult:
    """After a wrong answer: how many tries are left, and whether the record is now locked."""

    remaining: int
    locked: bool
    retry_after: int = 0


class StepUp:
    """Step-up state of channel identities for records (``order:482913``, ``appointment:APT-1``)."""

    def __init__(self, redis: Any = None) -> None:
        self.redis = _redis(redis)
        self.keys = Keys()
        config = settings_module.get()
        self.limit = config.integer("STEPUP_FAIL_LIMIT")
        self.lock_seconds = config.integer("STEPUP_LOCK_SECONDS")

    def passed(self, identity: Optional[str], record: str) -> bool:
        """Whether this channel identity proved itself for ``record`` recently."""
        return bool(identity) and bool(self.redis.exists(self.keys.stepup(identity, record)))

    def grant(self, identity: str, record: str, ttl: int = PASS_TTL) -> None:
        """Remember a correct answer (for ``ttl`` seconds)."""
        self.redis.set(self.keys.stepup(identity, record), "1", ex=ttl)
        Budget("stepup-record", self.limit, self.lock_seconds).reset(self.redis, self.keys, record)

    def locked(self, record: str, source: Optional[str] = None) -> int:
        """Seconds until step-up for ``record`` (from ``source``) may be tried again (0: now)."""
        ttl = self.redis.ttl(self.keys.stepup_lock(record))
        wait = max(0, int(ttl)) if ttl and ttl > 0 else 0
        if source:
            verdict = self._source_budget().spent(self.redis, self.keys, source)
            wait = max(wait, verdict.retry_after)
        return wait

    def _source_budget(self) -> Budget:
        return Budget("stepup-source", self.limit * 3, self.lock_seconds)

    def fail(self, identity: Optional[str], source: Optional[str], record: str) -> StepUpResult:
        """Count a wrong answer for the record (everyone's) and for the source.

        At ``STEPUP_FAIL_LIMIT`` wrong answers the record is locked for
        everyone; a source that failed three times that many, on any records,
        may not try again until its window ends.
        """
        by_record = Budget("stepup-record", self.limit, self.lock_seconds).charge(self.redis, self.keys, record)
        by_source = self._source_budget().charge(self.redis, self.keys, source or identity or "unknown")
        if not by_record.allowed:
            self.redis.set(self.keys.stepup_lock(record), "1", ex=self.lock_seconds)
            return StepUpResult(0, True, self.lock_seconds)
        if not by_source.allowed:
            return StepUpResult(0, True, by_source.retry_after or self.lock_seconds)
        return StepUpResult(self.limit - by_record.count, False)
