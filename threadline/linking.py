"""Link codes: the customer proves they hold two channels, and the two become one customer.

``issue_link_code`` gives a 6-digit, single-use code that lives 10 minutes and
remembers the channel identity it was issued to. Sending it from another
channel (``redeem_link_code``) joins that channel to the code's customer.

Guessing is budgeted three ways, each a fixed 10-minute window: failures per
channel identity (``LINK_FAIL_LIMIT``, default 5), per source address (same
limit; for platform webhooks the source is the channel identity itself), and
across everyone (``LINK_GLOBAL_FAIL_LIMIT``, default 100). An exhausted budget
refuses even a correct code (which is then not consumed). So an attacker with
unlimited addresses and visitor ids gets at most 100 guesses per 10 minutes
against a space of 10**6 codes: the chance of hitting one given live code in
its 10-minute life is at most 1e-4, and a hit still needs the next step.

Where the code's customer has a verified channel and the redeemer is not
verified, the link is not made at once: it waits (``PendingLink``, 10 minutes)
until the customer confirms on their verified channel. Codes issued to a
caller-id identity pass on only what it has: continuity, no personal data.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Optional

from threadline import identity
from threadline import settings as settings_module
from threadline.keys import Keys
from threadline.limits import Budget
from threadline.message import Origin, Trust

LINK_CODE_TTL = 600
LINK_FAIL_WINDOW = 600
PENDING_TTL = 600
CONFIRM_PAYLOAD = "/link_confirm"
REJECT_PAYLOAD = "/link_reject"


@dataclass(frozen=True)
class LinkResult:
    """Outcome of :func:`redeem_link_code`.

    ``reason`` is ``"invalid_or_expired"``, ``"rate_limited"``,
    ``"same_customer"`` or ``"pending_confirmation"`` when ``ok`` is false.
    """

    ok: bool
    customer_id: Optional[str]
    merged_from: Optional[str]
    reason: Optional[str]
    pending: Optional["PendingLink"] = None


@dataclass(frozen=True)
class PendingLink:
    """A link waiting for the customer's yes on ``confirm_channel``."""

    id: str
    into: str
    channel: str
    channel_user_id: str
    trust: str
    origin: str
    confirm_channel: str
    confirm_user: str

    @property
    def confirm_payload(self) -> str:
        """The button payload that confirms it."""
        return f'{CONFIRM_PAYLOAD}{{"link": "{self.id}"}}'

    @property
    def reject_payload(self) -> str:
        """The button payload that refuses it."""
        return f'{REJECT_PAYLOAD}{{"link": "{self.id}"}}'


def budgets() -> dict:
    """The three failure budgets (sender, source, everyone)."""
    config = settings_module.get()
    limit = config.integer("LINK_FAIL_LIMIT")
    return {
        "sender": Budget("link-sender", limit, LINK_FAIL_WINDOW),
        "source": Budget("link-source", limit, LINK_FAIL_WINDOW),
        "everyone": Budget("link-all", config.integer("LINK_GLOBAL_FAIL_LIMIT"), LINK_FAIL_WINDOW),
    }


def _code_key(code: str) -> str:
    return Keys().identity("code", identity._h("link-code:" + code))


def _pending_key(pending_id: str) -> str:
    return Keys().identity("pending", pending_id)


def issue_link_code(
    customer_id: str,
    redis: Any = None,
    *,
    channel: Optional[str] = None,
    channel_user_id: Optional[str] = None,
    trust: Optional[str] = None,
    origin: Optional[str] = None,
    ttl: int = LINK_CODE_TTL,
) -> str:
    """A 6-digit single-use code that links another channel to ``customer_id``.

    It remembers the channel identity it was issued to (``channel``,
    ``channel_user_id``; by default the customer's last channel) with its
    trust and origin, and expires after ``ttl`` seconds.
    """
    r = identity._redis(redis)
    if channel is None:
        channel = identity.last_channel(customer_id, r)
        channel_user_id = identity.address_for(customer_id, channel, r) if channel else None
    known = identity.channel_identity(channel, channel_user_id, r) if channel and channel_user_id else None
    value = json.dumps({
        "cid": customer_id,
        "trust": trust or (known.trust if known else Trust.ANONYMOUS.value),
        "origin": origin or (known.origin if known else Origin.CREATED.value),
        "channel": channel,
        "user": channel_user_id,
    })
    for _ in range(50):
        code = f"{secrets.randbelow(10 ** 6):06d}"
        if r.set(_code_key(code), value, nx=True, ex=ttl):
            return code
    raise RuntimeError("No free link code found; too many live codes.")


def peek(code: str, redis: Any = None) -> Optional[str]:
    """The customer a live code links to, without consuming it (to take the right locks)."""
    if not (code and code.isdigit() and len(code) == 6):
        return None
    raw = identity._redis(redis).get(_code_key(code))
    return json.loads(identity.text(raw))["cid"] if raw is not None else None


def _verified_identity(customer_id: str, r: Any, prefer: Optional[tuple]) -> Optional[dict]:
    found = [i for i in identity.identities(customer_id, r) if i["trust"] == Trust.VERIFIED.value]
    for candidate in found:
        if prefer and (candidate["channel"], candidate["user"]) == prefer:
            return candidate
    return found[0] if found else None


def redeem_link_code(
    code: str,
    channel: str,
    channel_user_id: str,
    redis: Any = None,
    tracker_store: Any = None,
    source: Optional[str] = None,
) -> LinkResult:
    """Link ``(channel, channel_user_id)`` to the customer who was issued ``code``.

    Budgets first (see the module docstring), then the code is consumed
    atomically. The redeemer gets the code owner's trust on the issuing
    identity or its own, whichever is stronger, and the issuer's origin if
    that was a caller id. When the link needs confirmation the result is
    ``pending_confirmation`` with the ``PendingLink`` to ask about. The caller
    holds both conversations' locks when it passes a ``tracker_store``.
    """
    r = identity._redis(redis)
    keys = Keys()
    code = (code or "").strip()
    subjects = {"sender": f"{channel}:{channel_user_id}", "source": source or f"{channel}:{channel_user_id}",
                "everyone": "all"}
    limits = budgets()
    for name, budget in limits.items():
        if not budget.spent(r, keys, subjects[name]).allowed:
            return LinkResult(False, None, None, "rate_limited")
    raw = r.getdel(_code_key(code)) if code.isdigit() and len(code) == 6 else None
    if raw is None:
        for name, budget in limits.items():
            budget.charge(r, keys, subjects[name])
        return LinkResult(False, None, None, "invalid_or_expired")
    issued = json.loads(identity.text(raw))
    customer_id = issued["cid"]
    current = identity.channel_identity(channel, channel_user_id, r)
    if current is not None and current.customer_id == customer_id:
        return LinkResult(False, customer_id, None, "same_customer")
    trust = Trust.strongest(issued.get("trust"), current.trust if current else None).value
    origin = Origin.CALLER_ID.value if issued.get("origin") == Origin.CALLER_ID.value else Origin.LINK.value
    redeemer_verified = current is not None and current.trust == Trust.VERIFIED.value
    if not redeemer_verified:
        prefer = (issued.get("channel"), issued.get("user"))
        verified = _verified_identity(customer_id, r, prefer)
        if verified is not None:
            pending = PendingLink(
                id=secrets.token_hex(8), into=customer_id, channel=channel, channel_user_id=channel_user_id,
                trust=trust, origin=origin, confirm_channel=verified["channel"], confirm_user=verified["user"],
            )
            r.set(_pending_key(pending.id), json.dumps(asdict(pending)), ex=PENDING_TTL)
            return LinkResult(False, customer_id, None, "pending_confirmation", pending)
    merged_from = identity.link(channel, channel_user_id, customer_id, trust, redis=r,
                                tracker_store=tracker_store, origin=origin)
    return LinkResult(True, customer_id, merged_from, None)


def take_pending(pending_id: str, confirm_channel: str, confirm_user: str, redis: Any = None) -> Optional[PendingLink]:
    """The pending link ``pending_id`` if it asked this channel identity; consumed once."""
    r = identity._redis(redis)
    raw = r.get(_pending_key(pending_id))
    if raw is None:
        return None
    pending = PendingLink(**json.loads(identity.text(raw)))
    if (pending.confirm_channel, pending.confirm_user) != (confirm_channel, confirm_user):
        return None
    if not r.delete(_pending_key(pending_id)):
        return None  # someone else took it first
    return pending


def complete(pending: PendingLink, redis: Any = None, tracker_store: Any = None) -> Optional[str]:
    """Make a confirmed link; returns the merged customer id (see ``identity.link``).

    The confirmation proved the redeemer is the person on the verified
    channel, so the business customer that channel is proven to be carries over.
    """
    r = identity._redis(redis)
    merged = identity.link(pending.channel, pending.channel_user_id, pending.into, pending.trust,
                           redis=r, tracker_store=tracker_store, origin=pending.origin)
    if pending.origin != Origin.CALLER_ID.value:
        owner = r.get(owner_key(pending.confirm_channel, pending.confirm_user))
        if owner is not None:
            r.set(owner_key(pending.channel, pending.channel_user_id), owner)
    return merged


def owner_key(channel: str, channel_user_id: str) -> str:
    """Where the business customer a channel identity is proven to be is remembered."""
    return Keys().identity("owner-of", identity.identity_hash(channel, channel_user_id))
