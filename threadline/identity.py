"""The identity index: which customer is behind a (channel, channel user id).

A customer id (``c_`` + 20 random hex characters) is the Rasa conversation id,
so a customer who changes channel keeps one tracker. The index lives in Redis:

``{p}:id:ch:{channel}:{h(user id)}``  hash ``cid``, ``trust`` — one channel identity
``{p}:id:phone:{h(E.164)}``           string -> customer id (WhatsApp and voice)
``{p}:id:webref:{h(ref)}``            string -> customer id (signed web identities)
``{p}:id:cust:{cid}``                 hash ``addr:{channel}`` -> user id, ``last_channel``
``{p}:id:cust:{cid}:idx``             set of the index keys above naming this customer
``{p}:id:code:{h(code)}``             link code -> "customer id|trust", expires
``{p}:id:fail:{channel}:{h(user id)}`` failed link-code attempts, expires

``{p}`` is ``THREADLINE_KEY_PREFIX`` (default ``threadline``). ``h`` is an HMAC
with the server pepper ``THREADLINE_ID_PEPPER``, so no key names a phone
number, platform user id or external customer reference.

Trust is kept per channel identity ("anonymous" < "low" < "verified") and only
ever rises: a WhatsApp ``wa_id`` is a verified phone, a voice caller id is
spoofable and so "low" even when the same number is verified on WhatsApp, a
Telegram user is "low", an unsigned web visitor "anonymous", a correctly
signed web identity "verified". Web visitor ids must be unguessable session
ids, since the trust earned by a signed request stays with that visitor id.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Optional

import phonenumbers

from threadline import redis_client, settings

TRUST_LEVELS = ("anonymous", "low", "verified")
LINK_CODE_TTL = 600
LINK_FAIL_LIMIT = 5
LINK_FAIL_WINDOW = 600
# Channels where a bare channel user id proves nothing (the browser picks it).
ANONYMOUS_CHANNELS = frozenset({"webchat", "web", "socketio", "rest"})
_DEV_PEPPER = "threadline-dev-pepper-change-me"


@dataclass(frozen=True)
class Identity:
    """The customer behind one channel identity, as seen by :func:`resolve`."""

    customer_id: str
    trust: str
    is_new: bool


@dataclass
class LinkResult:
    """Outcome of :func:`redeem_link_code`.

    ``reason`` is ``"invalid_or_expired"``, ``"rate_limited"`` or
    ``"same_customer"`` when ``ok`` is false.
    """

    ok: bool
    customer_id: Optional[str]
    merged_from: Optional[str]
    reason: Optional[str]


def _rank(trust: Optional[str]) -> int:
    return TRUST_LEVELS.index(trust) if trust in TRUST_LEVELS else 0


def _max_trust(*levels: Optional[str]) -> str:
    return TRUST_LEVELS[max(_rank(level) for level in levels)]


def _prefix() -> str:
    return (settings.env("THREADLINE_KEY_PREFIX", "threadline") or "threadline") + ":id:"


def _h(value: str) -> str:
    pepper = settings.env("THREADLINE_ID_PEPPER", _DEV_PEPPER) or _DEV_PEPPER
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def _channel_key(channel: str, channel_user_id: str) -> str:
    return f"{_prefix()}ch:{channel}:{_h(channel_user_id)}"


def _phone_key(e164: str) -> str:
    return f"{_prefix()}phone:{_h(e164)}"


def _webref_key(customer_ref: str) -> str:
    return f"{_prefix()}webref:{_h('web-ref:' + customer_ref)}"


def _customer_key(customer_id: str) -> str:
    return f"{_prefix()}cust:{customer_id}"


def _code_key(code: str) -> str:
    return f"{_prefix()}code:{_h('link-code:' + code)}"


def _fail_key(channel: str, channel_user_id: str) -> str:
    return f"{_prefix()}fail:{channel}:{_h(channel_user_id)}"


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


_script_cache: Dict[tuple, Any] = {}


def _script(redis: Any, name: str, source: str) -> Any:
    key = (id(redis), name)
    script = _script_cache.get(key)
    if script is None or script.registered_client is not redis:
        script = redis.register_script(source)
        _script_cache[key] = script
    return script


def _s(value: Any) -> Optional[str]:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def new_customer_id() -> str:
    """A fresh opaque customer id: ``c_`` and 20 random hex characters."""
    return "c_" + secrets.token_hex(10)


def normalise_phone(raw: str, default_region: str = "US") -> Optional[str]:
    """``raw`` as an E.164 number (``+14155552671``), or None if it is not valid.

    Numbers without ``+`` are read as national numbers of ``default_region``
    first, then as international numbers missing their ``+`` (the way
    WhatsApp ``wa_id`` values and some SIP caller ids are written).
    """
    if not raw:
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    candidates = [(text, default_region)]
    if not text.startswith("+") and digits:
        candidates.append(("+" + digits, None))
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def sign_web_identity(customer_ref: str, secret: str) -> str:
    """Hex HMAC-SHA256 of ``customer_ref`` under ``secret`` (done by the website's backend)."""
    return hmac.new(secret.encode(), customer_ref.encode(), hashlib.sha256).hexdigest()


def verify_web_identity(customer_ref: str, signature: str, secret: str) -> bool:
    """Whether ``signature`` signs ``customer_ref``; compared in constant time."""
    if not (customer_ref and signature and secret):
        return False
    return hmac.compare_digest(sign_web_identity(customer_ref, secret), signature.lower())


# KEYS: channel identity, phone index ("" if none), web-ref index ("" if none)
# ARGV: candidate new customer id, channel, channel user id, claimed trust,
#       customer key prefix
_RESOLVE_LUA = """
local rank = {anonymous = 0, low = 1, verified = 2}
local chan, phone, webref = KEYS[1], KEYS[2], KEYS[3]
local new_cid, channel, cuid, claim, cprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('HMGET', chan, 'cid', 'trust')
local cid, trust = cur[1], cur[2]
local known = false
if webref ~= '' then known = redis.call('GET', webref) end
if (not known) and phone ~= '' then known = redis.call('GET', phone) end
local is_new = 0
if cid and known and known ~= cid and webref ~= '' then
  -- a signed web identity names another customer: this session now is theirs
  redis.call('SREM', cprefix .. cid .. ':idx', chan)
  if redis.call('HGET', cprefix .. cid, 'addr:' .. channel) == cuid then
    redis.call('HDEL', cprefix .. cid, 'addr:' .. channel)
  end
  cid, trust = known, claim
elseif not cid then
  if known then cid = known else cid = new_cid; is_new = 1 end
  trust = claim
elseif (rank[claim] or 0) > (rank[trust] or 0) then
  trust = claim
end
local idx = cprefix .. cid .. ':idx'
redis.call('HSET', chan, 'cid', cid, 'trust', trust)
redis.call('SADD', idx, chan)
for _, key in ipairs({phone, webref}) do
  if key ~= '' and redis.call('SETNX', key, cid) == 1 then
    redis.call('SADD', idx, key)
  end
end
redis.call('HSET', cprefix .. cid, 'addr:' .. channel, cuid)
return {cid, trust, is_new}
"""


def resolve(
    channel: str,
    channel_user_id: str,
    *,
    phone: Optional[str] = None,
    verified_phone: bool = False,
    signed_customer_id: Optional[str] = None,
    signature: Optional[str] = None,
    redis: Any = None,
) -> Identity:
    """The customer behind ``(channel, channel_user_id)``, created on first contact.

    ``phone`` (a WhatsApp ``wa_id`` with ``verified_phone=True``, or a voice
    caller id) joins every channel identity with the same E.164 number into
    one customer. ``signed_customer_id`` with a valid ``signature`` (see
    :func:`sign_web_identity`, secret ``WEBCHAT_IDENTITY_SECRET``) maps a web
    visitor to the website's customer; an invalid signature counts as none.
    One Lua script does the lookup and the creation, so two first messages
    arriving at once still make one customer.
    """
    r = _redis(redis)
    claim = "anonymous" if channel in ANONYMOUS_CHANNELS else "low"
    phone_key = webref_key = ""
    if phone:
        raw = phone.strip()
        # wa_ids always carry the country code, without "+".
        if verified_phone and raw.isdigit():
            raw = "+" + raw
        e164 = normalise_phone(raw)
        if e164:
            phone_key = _phone_key(e164)
            claim = _max_trust(claim, "verified" if verified_phone else "low")
    secret = settings.env("WEBCHAT_IDENTITY_SECRET")
    if signed_customer_id and signature and secret:
        if verify_web_identity(signed_customer_id, signature, secret):
            webref_key = _webref_key(signed_customer_id)
            claim = "verified"
    cid, trust, is_new = _script(r, "resolve", _RESOLVE_LUA)(
        keys=[_channel_key(channel, channel_user_id), phone_key, webref_key],
        args=[new_customer_id(), channel, channel_user_id, claim, _prefix() + "cust:"],
        client=r,
    )
    return Identity(customer_id=_s(cid), trust=_s(trust), is_new=bool(int(is_new)))


def channel_identity(channel: str, channel_user_id: str, redis: Any = None) -> Optional[Identity]:
    """The customer and trust of a known channel identity, without creating one."""
    cid, trust = _redis(redis).hmget(_channel_key(channel, channel_user_id), "cid", "trust")
    if cid is None:
        return None
    return Identity(customer_id=_s(cid), trust=_s(trust) or "anonymous", is_new=False)


def address_for(customer_id: str, channel: str, redis: Any = None) -> Optional[str]:
    """The channel user id that reaches ``customer_id`` on ``channel``, if any."""
    return _s(_redis(redis).hget(_customer_key(customer_id), "addr:" + channel))


def addresses(customer_id: str, redis: Any = None) -> Dict[str, str]:
    """Every channel the customer is reachable on: ``{channel: channel_user_id}``."""
    fields = _redis(redis).hgetall(_customer_key(customer_id))
    result = {}
    for field, value in fields.items():
        name = _s(field)
        if name.startswith("addr:"):
            result[name[len("addr:"):]] = _s(value)
    return result


def last_channel(customer_id: str, redis: Any = None) -> Optional[str]:
    """The channel the customer last wrote on (see :func:`record_channel_use`)."""
    return _s(_redis(redis).hget(_customer_key(customer_id), "last_channel"))


def record_channel_use(customer_id: str, channel: str, redis: Any = None) -> Optional[str]:
    """Mark ``channel`` as the customer's last channel; returns the previous one.

    A previous value different from ``channel`` means the customer switched.
    """
    pipe = _redis(redis).pipeline(transaction=True)
    key = _customer_key(customer_id)
    pipe.hget(key, "last_channel")
    pipe.hset(key, "last_channel", channel)
    previous, _ = pipe.execute()
    return _s(previous)


def _trust_on_last_channel(r: Any, customer_id: str) -> str:
    channel = last_channel(customer_id, r)
    user_id = address_for(customer_id, channel, r) if channel else None
    if not user_id:
        return "anonymous"
    trust = r.hget(_channel_key(channel, user_id), "trust")
    return _s(trust) or "anonymous"


def issue_link_code(
    customer_id: str,
    redis: Any = None,
    *,
    trust: Optional[str] = None,
    ttl: int = LINK_CODE_TTL,
) -> str:
    """A 6-digit single-use code that links another channel to ``customer_id``.

    The code remembers the trust of the channel identity it was issued on:
    ``trust`` if given, else the trust of the customer's identity on their
    last channel. It expires after ``ttl`` seconds (10 minutes).
    """
    r = _redis(redis)
    owner_trust = trust or _trust_on_last_channel(r, customer_id)
    value = f"{customer_id}|{owner_trust}"
    for _ in range(50):
        code = f"{secrets.randbelow(10 ** 6):06d}"
        if r.set(_code_key(code), value, nx=True, ex=ttl):
            return code
    raise RuntimeError("No free link code found; too many live codes.")


# KEYS: failure counter, code. ARGV: failure limit, failure window (s)
_REDEEM_LUA = """
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails >= tonumber(ARGV[1]) then return {'rate_limited', false} end
local value = redis.call('GETDEL', KEYS[2])
if not value then
  if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  return {'invalid_or_expired', false}
end
return {'ok', value}
"""


def redeem_link_code(
    code: str,
    channel: str,
    channel_user_id: str,
    redis: Any = None,
    tracker_store: Any = None,
) -> LinkResult:
    """Link ``(channel, channel_user_id)`` to the customer who was issued ``code``.

    The code is consumed atomically on first use. After ``LINK_FAIL_LIMIT``
    failed attempts within ``LINK_FAIL_WINDOW`` seconds the identity is
    refused ("rate_limited") even with a correct code, which is then not
    consumed. Trust: a redeemed code proves the redeemer can read the channel
    the code was sent to, so the redeeming identity gets the higher of the
    code owner's trust on the issuing channel identity and its own current
    trust. If the redeemer already was another customer, that customer is
    merged into the code's customer (see :func:`link`).
    """
    r = _redis(redis)
    code = (code or "").strip()
    status, value = _script(r, "redeem", _REDEEM_LUA)(
        keys=[_fail_key(channel, channel_user_id), _code_key(code)],
        args=[LINK_FAIL_LIMIT, LINK_FAIL_WINDOW],
        client=r,
    )
    status = _s(status)
    if status != "ok":
        return LinkResult(ok=False, customer_id=None, merged_from=None, reason=status)
    customer_id, _, owner_trust = _s(value).partition("|")
    current = channel_identity(channel, channel_user_id, r)
    if current is not None and current.customer_id == customer_id:
        return LinkResult(ok=False, customer_id=customer_id, merged_from=None, reason="same_customer")
    trust = _max_trust(owner_trust, current.trust if current else None)
    merged_from = link(channel, channel_user_id, customer_id, trust, redis=r, tracker_store=tracker_store)
    return LinkResult(ok=True, customer_id=customer_id, merged_from=merged_from, reason=None)


# KEYS: channel identity. ARGV: into customer id, trust, channel, channel user id,
#       customer key prefix. Re-points every index entry of the channel
#       identity's previous customer (if different) to the into customer.
_LINK_LUA = """
local chan = KEYS[1]
local into, trust, channel, cuid, cprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local from = redis.call('HGET', chan, 'cid')
local into_key, into_idx = cprefix .. into, cprefix .. into .. ':idx'
if from and from ~= into then
  local from_key, from_idx = cprefix .. from, cprefix .. from .. ':idx'
  for _, key in ipairs(redis.call('SMEMBERS', from_idx)) do
    if redis.call('TYPE', key).ok == 'hash' then
      redis.call('HSET', key, 'cid', into)
    else
      redis.call('SET', key, into)
    end
    redis.call('SADD', into_idx, key)
  end
  local fields = redis.call('HGETALL', from_key)
  for i = 1, #fields, 2 do
    redis.call('HSETNX', into_key, fields[i], fields[i + 1])
  end
  redis.call('DEL', from_key, from_idx)
else
  from = false
end
redis.call('HSET', chan, 'cid', into, 'trust', trust)
redis.call('SADD', into_idx, chan)
redis.call('HSET', into_key, 'addr:' .. channel, cuid)
return from
"""


def link(
    channel: str,
    channel_user_id: str,
    customer_id: str,
    trust: str,
    redis: Any = None,
    tracker_store: Any = None,
) -> Optional[str]:
    """Point ``(channel, channel_user_id)`` at ``customer_id`` with ``trust``.

    If the channel identity belonged to another customer, that customer is
    merged in: its conversation is appended to ``customer_id``'s by
    ``tracker_store.merge_conversations_sync`` (skipped when no tracker store
    is given) and all its index entries (channel identities, phone, web ref)
    are re-pointed. Addresses of ``customer_id`` win over the merged
    customer's, except for the linking channel. Returns the merged customer
    id, or None when no merge happened.
    """
    if trust not in TRUST_LEVELS:
        raise ValueError(f"Unknown trust level {trust!r}")
    r = _redis(redis)
    current = channel_identity(channel, channel_user_id, r)
    if current is not None and current.customer_id != customer_id and tracker_store is not None:
        # The conversation moves first: if it fails, the index still points
        # at the conversation it belongs to.
        tracker_store.merge_conversations_sync(current.customer_id, customer_id)
    merged = _script(r, "link", _LINK_LUA)(
        keys=[_channel_key(channel, channel_user_id)],
        args=[customer_id, trust, channel, channel_user_id, _prefix() + "cust:"],
        client=r,
    )
    return _s(merged)
