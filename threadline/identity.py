"""The identity index: which customer is behind a (channel, channel user id).

A customer id (``c_`` + 20 random hex characters) is the Rasa conversation id,
so a customer who changes channel keeps one tracker. The index lives in Redis
(keys in ``threadline.keys``): one hash per channel identity (customer, trust,
origin), the verified phone and signed web-ref indexes, and one hash per
customer (its address on each channel, its last channel, its bound web ref).
Key names carry HMACs under the identity pepper, never a phone number or
platform user id.

Trust (``threadline.message.Trust``) is kept per channel identity:

* a WhatsApp ``wa_id`` (or a Telegram contact of the user's own) is a
  *verified* phone: it creates or joins the customer of that phone, and claims
  the phone index if nobody holds it;
* a voice caller id is spoofable: *low* trust, and it never creates or claims a
  phone-index entry. A caller whose number a verified channel holds joins that
  customer with origin ``caller_id``, which gives continuity but no personal
  data; otherwise the caller has a customer of their own;
* a Telegram account is *low*; an unsigned web visitor *anonymous*;
* a web identity signed by the website (ref, expiry, HMAC under
  ``WEBCHAT_IDENTITY_SECRET``) is *verified* for that message only: an
  unsigned message from the same visitor is anonymous again (a visitor
  joined by a confirmed link code keeps the trust the link gave it). A ref seen for
  the first time binds to the visitor's customer unless that customer is
  bound to another ref, in which case it is a new customer; a ref already
  known re-points the visitor to its customer. Nothing is merged either way.

Trust only rises on the other channels. Link codes (``threadline.linking``)
join channels the customer proves to hold.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import phonenumbers

from threadline import redis_client
from threadline import settings as settings_module
from threadline.keys import Keys
from threadline.message import TRUST_LEVELS, Origin, Trust

# Channels where a bare channel user id proves nothing (the browser picks it).
ANONYMOUS_CHANNELS = frozenset({"webchat", "web", "socketio", "rest"})


@dataclass(frozen=True)
class Identity:
    """The customer behind one channel identity, as seen by :func:`resolve`."""

    customer_id: str
    trust: str
    is_new: bool
    origin: str = Origin.CREATED.value


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


def _keys() -> Keys:
    return Keys()


def _h(value: str) -> str:
    pepper = settings_module.get().secret("id_pepper")
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def identity_hash(channel: str, channel_user_id: str) -> str:
    """An opaque, stable name for one channel identity (step-up state, budgets)."""
    return _h(f"identity:{channel}:{channel_user_id}")


def _channel_key(channel: str, channel_user_id: str) -> str:
    return _keys().identity("ch", channel, _h(channel_user_id))


def _phone_key(e164: str) -> str:
    return _keys().identity("phone", _h(e164))


def _webref_key(customer_ref: str) -> str:
    return _keys().identity("webref", _h("web-ref:" + customer_ref))


def _customer_key(customer_id: str) -> str:
    return _keys().identity("cust", customer_id)


def _customer_prefix() -> str:
    return _keys().identity("cust") + ":"


_script_cache: Dict[tuple, Any] = {}


def script(redis: Any, name: str, source: str) -> Any:
    """A registered Lua script for ``redis`` (cached per client)."""
    key = (id(redis), name)
    found = _script_cache.get(key)
    if found is None or found.registered_client is not redis:
        found = redis.register_script(source)
        _script_cache[key] = found
    return found


def text(value: Any) -> Optional[str]:
    """A Redis reply as text (None stays None)."""
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
    stripped = raw.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    candidates = [(stripped, default_region)]
    if not stripped.startswith("+") and digits:
        candidates.append(("+" + digits, None))
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


# ----------------------------------------------------------- signed web identity


def _signed_text(customer_ref: str, expires: Optional[int]) -> str:
    return f"{customer_ref}|{expires}" if expires is not None else customer_ref


def sign_web_identity(customer_ref: str, secret: str, expires: Optional[int] = None) -> str:
    """Hex HMAC-SHA256 of ``"<ref>|<expires>"`` under ``secret`` (done by the website's backend).

    ``expires`` is a unix time; the web chat refuses signatures without one
    or past it (``None`` signs the bare ref, for tools that check old links).
    """
    return hmac.new(secret.encode(), _signed_text(customer_ref, expires).encode(), hashlib.sha256).hexdigest()


def verify_web_identity(
    customer_ref: str, signature: str, secret: str, expires: Optional[int] = None,
    *, now: Optional[float] = None, max_age: Optional[int] = None,
) -> bool:
    """Whether ``signature`` signs ``customer_ref`` (and ``expires``, not past); constant time.

    With ``max_age`` an expiry further than that in the future is refused too,
    so a leaked signature cannot be made to last forever.
    """
    if not (customer_ref and isinstance(signature, str) and signature and secret):
        return False
    if max_age is not None and expires is None:
        return False  # what the web chat accepts must expire
    if expires is not None:
        current = time.time() if now is None else now
        if expires <= current or (max_age is not None and expires > current + max_age):
            return False
    expected = sign_web_identity(customer_ref, secret, expires)
    given = signature.strip().lower()
    if not given.isascii():
        return False
    return hmac.compare_digest(expected, given)


# ------------------------------------------------------------------- resolving

# KEYS: channel identity, phone index ("" if none), web-ref index ("" if none)
# ARGV: new customer id, channel, channel user id, claimed trust, customer key
#       prefix, phone mode (verified | claimed | ""), web-ref hash, trust mode
#       (rise | set)
_RESOLVE_LUA = """
local rank = {anonymous = 0, low = 1, verified = 2}
local chan, phone, webref = KEYS[1], KEYS[2], KEYS[3]
local new_cid, channel, cuid, claim, cprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local phone_mode, refh, trust_mode = ARGV[6], ARGV[7], ARGV[8]
local cur = redis.call('HMGET', chan, 'cid', 'trust', 'origin')
local cid, trust, origin = cur[1], cur[2], cur[3]
local is_new, moved = 0, false
local function leave()
  if cid then
    redis.call('SREM', cprefix .. cid .. ':idx', chan)
    if redis.call('HGET', cprefix .. cid, 'addr:' .. channel) == cuid then
      redis.call('HDEL', cprefix .. cid, 'addr:' .. channel)
    end
  end
end
local function move(to, how)
  leave()
  cid, origin, moved = to, how, true
end
local function create()
  leave()
  cid, origin, is_new, moved = new_cid, 'created', 1, true
end
if webref ~= '' then
  local known = redis.call('GET', webref)
  if known then
    if known ~= cid then move(known, 'webref') end
  else
    local bound = false
    if cid then bound = redis.call('HGET', cprefix .. cid, 'webref') end
    if not cid or (bound and bound ~= refh) then create() end
    redis.call('SET', webref, cid)
    redis.call('HSET', cprefix .. cid, 'webref', refh)
    redis.call('SADD', cprefix .. cid .. ':idx', webref)
  end
elseif phone ~= '' then
  local known = redis.call('GET', phone)
  if phone_mode == 'verified' then
    if not cid then
      if known then cid, origin, moved = known, 'phone', true else create() end
    end
    if not known then
      redis.call('SET', phone, cid)
      redis.call('SADD', cprefix .. cid .. ':idx', phone)
    end
  elseif known then
    if known ~= cid then move(known, 'caller_id') end
  elseif not cid then
    create()
  end
elseif not cid then
  create()
end
if moved or not trust or (trust_mode == 'set' and origin ~= 'link') then
  trust = claim
elseif (rank[claim] or 0) > (rank[trust] or 0) then
  trust = claim
end
origin = origin or 'created'
redis.call('HSET', chan, 'cid', cid, 'trust', trust, 'origin', origin)
redis.call('SADD', cprefix .. cid .. ':idx', chan)
redis.call('HSET', cprefix .. cid, 'addr:' .. channel, cuid)
return {cid, trust, is_new, origin}
"""


def resolve(
    channel: str,
    channel_user_id: str,
    *,
    phone: Optional[str] = None,
    verified_phone: bool = False,
    signed_customer_id: Optional[str] = None,
    signature: Optional[str] = None,
    signature_expires: Optional[int] = None,
    redis: Any = None,
) -> Identity:
    """The customer behind ``(channel, channel_user_id)``, created on first contact.

    See the module docstring for the rules. ``signed_customer_id`` counts only
    with a valid ``signature`` (and unexpired ``signature_expires``) under
    ``WEBCHAT_IDENTITY_SECRET``. One Lua script does the lookup and the
    creation, so two first messages arriving at once still make one customer.
    """
    r = _redis(redis)
    config = settings_module.get()
    web = channel in ANONYMOUS_CHANNELS
    claim = Trust.ANONYMOUS if web else Trust.LOW
    phone_key = webref_key = ref_hash = phone_mode = ""
    if phone and not web:
        raw = phone.strip()
        if verified_phone and raw.isdigit():
            raw = "+" + raw  # wa_ids always carry the country code, without "+"
        e164 = normalise_phone(raw)
        if e164:
            phone_key = _phone_key(e164)
            phone_mode = "verified" if verified_phone else "claimed"
            claim = Trust.strongest(claim, Trust.VERIFIED if verified_phone else Trust.LOW)
    secret = config.get_raw("WEBCHAT_IDENTITY_SECRET")
    if signed_customer_id and signature and secret and verify_web_identity(
        signed_customer_id, signature, secret, signature_expires,
        max_age=config.integer("WEBCHAT_IDENTITY_MAX_AGE"),
    ):
        webref_key = _webref_key(signed_customer_id)
        ref_hash = _h("web-ref:" + signed_customer_id)
        claim = Trust.VERIFIED
    cid, trust, is_new, origin = script(r, "resolve", _RESOLVE_LUA)(
        keys=[_channel_key(channel, channel_user_id), phone_key, webref_key],
        args=[new_customer_id(), channel, channel_user_id, claim.value, _customer_prefix(), phone_mode,
              ref_hash, "set" if web else "rise"],
        client=r,
    )
    return Identity(customer_id=text(cid), trust=text(trust), is_new=bool(int(is_new)), origin=text(origin))


def channel_identity(channel: str, channel_user_id: str, redis: Any = None) -> Optional[Identity]:
    """The customer, trust and origin of a known channel identity, without creating one."""
    cid, trust, origin = _redis(redis).hmget(_channel_key(channel, channel_user_id), "cid", "trust", "origin")
    if cid is None:
        return None
    return Identity(text(cid), text(trust) or Trust.ANONYMOUS.value, False, text(origin) or Origin.CREATED.value)


def customer_for_phone(e164: str, redis: Any = None) -> Optional[str]:
    """The customer a verified phone number belongs to, if any."""
    return text(_redis(redis).get(_phone_key(e164)))


def address_for(customer_id: str, channel: str, redis: Any = None) -> Optional[str]:
    """The channel user id that reaches ``customer_id`` on ``channel``, if any."""
    return text(_redis(redis).hget(_customer_key(customer_id), "addr:" + channel))


def addresses(customer_id: str, redis: Any = None) -> Dict[str, str]:
    """Every channel the customer is reachable on: ``{channel: channel_user_id}``."""
    result = {}
    for name, value in _redis(redis).hgetall(_customer_key(customer_id)).items():
        name = text(name)
        if name.startswith("addr:"):
            result[name[len("addr:"):]] = text(value)
    return result


def identities(customer_id: str, redis: Any = None) -> List[Dict[str, str]]:
    """Every channel identity of the customer: channel, user id, trust and origin."""
    r = _redis(redis)
    found = []
    for channel, user_id in addresses(customer_id, r).items():
        known = channel_identity(channel, user_id, r)
        if known is not None and known.customer_id == customer_id:
            found.append({"channel": channel, "user": user_id, "trust": known.trust, "origin": known.origin})
    return found


def last_channel(customer_id: str, redis: Any = None) -> Optional[str]:
    """The channel the customer last wrote on (see :func:`record_channel_use`)."""
    return text(_redis(redis).hget(_customer_key(customer_id), "last_channel"))


def record_channel_use(customer_id: str, channel: str, redis: Any = None) -> Optional[str]:
    """Mark ``channel`` as the customer's last channel; returns the previous one.

    A previous value different from ``channel`` means the customer switched.
    """
    pipe = _redis(redis).pipeline(transaction=True)
    queue_channel_use(pipe, customer_id, channel)
    previous, _ = pipe.execute()
    return text(previous)


def queue_channel_use(pipe: Any, customer_id: str, channel: str) -> None:
    """Queue :func:`record_channel_use`'s two commands on ``pipe`` (its first result is the previous channel)."""
    key = _customer_key(customer_id)
    now = f"{time.time():.3f}"
    pipe.hget(key, "last_channel")
    pipe.hset(key, mapping={"last_channel": channel, "last_seen": now, "seen:" + channel: now})


def channels_by_recency(customer_id: str, redis: Any = None) -> List[str]:
    """The customer's channels, the one they wrote on most recently first."""
    fields = _redis(redis).hgetall(_customer_key(customer_id))
    seen = {text(k)[len("seen:"):]: float(text(v)) for k, v in fields.items() if text(k).startswith("seen:")}
    return sorted(seen, key=seen.get, reverse=True)


def forget_customer(customer_id: str, redis: Any = None) -> int:
    """Delete every index entry of the customer (erasure); returns how many keys went."""
    r = _redis(redis)
    prefix = _customer_prefix()
    index = r.smembers(prefix + customer_id + ":idx")
    keys = [text(k) for k in index] + [prefix + customer_id, prefix + customer_id + ":idx"]
    return r.delete(*keys) if keys else 0


# ---------------------------------------------------------------------- linking

# KEYS: channel identity. ARGV: into customer id, trust, channel, channel user
#       id, customer key prefix, origin. Re-points every index entry of the
#       channel identity's previous customer (if different) to the into one.
_LINK_LUA = """
local chan = KEYS[1]
local into, trust, channel, cuid, cprefix, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
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
redis.call('HSET', chan, 'cid', into, 'trust', trust, 'origin', origin)
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
    origin: str = Origin.LINK.value,
) -> Optional[str]:
    """Point ``(channel, channel_user_id)`` at ``customer_id`` with ``trust``.

    If the channel identity belonged to another customer, that customer is
    merged in: its conversation is merged into ``customer_id``'s by
    ``tracker_store.merge_conversations_sync`` (skipped when no tracker store
    is given; the caller holds both conversations' locks) and all its index
    entries (channel identities, phone, web ref) are re-pointed. Addresses of
    ``customer_id`` win over the merged customer's, except for the linking
    channel. Returns the merged customer id, or None when no merge happened.
    """
    if trust not in TRUST_LEVELS:
        raise ValueError(f"Unknown trust level {trust!r}")
    r = _redis(redis)
    current = channel_identity(channel, channel_user_id, r)
    if current is not None and current.customer_id != customer_id and tracker_store is not None:
        # The conversation moves first: if it fails, the index still points
        # at the conversation it belongs to.
        tracker_store.merge_conversations_sync(current.customer_id, customer_id)
    merged = script(r, "link", _LINK_LUA)(
        keys=[_channel_key(channel, channel_user_id)],
        args=[customer_id, trust, channel, channel_user_id, _customer_prefix(), origin],
        client=r,
    )
    return text(merged)


def trust_of(customer_id: str, channel: Optional[str], redis: Any = None) -> Optional[Identity]:
    """The customer's channel identity on ``channel`` (the one ``address_for`` names)."""
    if not channel:
        return None
    r = _redis(redis)
    user_id = address_for(customer_id, channel, r)
    known = channel_identity(channel, user_id, r) if user_id else None
    return known if known is not None and known.customer_id == customer_id else None
