"""Outbound phone calls: the journey worker phones a customer, the callee answers the bot.

The caller of ``VoiceInput.place_call(customer_id, number, prompt, context)``
(the journey worker, inside the rasa server process) has already appended
``prompt`` to the customer's conversation as a bot utterance. ``place_call``:

1. checks the request and the channel's outbound settings (account, caller
   number, public base URL); anything missing is a ``PlacedCall`` error, never
   an exception, and incoming calls work without any of them;
2. stores a single-use answer token (``{p}:voice:outbound:{h(token)}``, one
   hour) holding the customer id, the prompt and the context;
3. asks the provider to call ``number`` with the answer URL
   ``<public base>/webhooks/<channel>/outbound?token=<token>`` and the status
   callback ``/webhooks/<channel>/status``.

When the callee picks up, the provider posts the answer webhook. It is
verified like every other webhook of the channel and goes through the same
limits; nothing is sent to Rasa. The token is claimed for that call (a retry
of the same call's answer gets the same document; any other call, an unknown
or an expired token hears a polite goodbye and the call ends). The answer
speaks the prompt inside a barge-in gather whose action is the usual
``/gather?turn=1``, and the call is bound to the customer: every turn of the
call is a turn of that customer's conversation, whatever the identity index
says about the number, with trust ``low`` and origin ``outbound_call`` (the
person who answers a phone we called proves nothing more than a caller id).

Call-quality events (``{p}:voice:events``): ``call_placed`` when the provider
accepted the call, ``call_started`` (direction ``outbound``) when it was
answered; busy, no-answer and failed calls are recorded by the status
callback as ``call_failed`` like every call.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from threadline import identity
from threadline.keys import Keys
from threadline.message import Origin

TOKEN_TTL = 3600
EVENT_ANSWER = "answer"  # the route name of the answer webhook (``/outbound``)
CALL_PLACED = "call_placed"
CALL_STARTED = "call_started"
ORIGIN = Origin.OUTBOUND_CALL.value

MAX_PROMPT_CHARS = 2000
MAX_CONTEXT_ITEMS = 20
MAX_CONTEXT_CHARS = 200

HANGUP_TEXT = "Sorry, this call can't continue. We'll be in touch another way. Goodbye."


@dataclass
class PlacedCall:
    """What ``place_call`` achieved: the provider's call id, or why not."""

    ok: bool
    call_id: Optional[str] = None  # the provider's call id (Twilio CallSid, jambonz call_sid)
    status: Optional[int] = None  # HTTP status of the provider's answer
    error: Optional[str] = None  # why it failed, secrets redacted
    retry_after: Optional[float] = None  # seconds, when the provider answered 429 (Retry-After)


@dataclass(frozen=True)
class OutboundCall:
    """What an answer token holds: whose conversation the call belongs to and what to say first."""

    customer_id: str
    prompt: str
    context: Dict[str, str] = field(default_factory=dict)


def check_request(customer_id: Any, number: Any, prompt: Any, context: Any) -> Tuple[Optional[str], Optional[str]]:
    """(E.164 number, None) for a usable request, else (None, what is wrong)."""
    if not isinstance(customer_id, str) or not customer_id.strip():
        return None, "customer_id must be the customer's conversation id"
    phone = identity.normalise_phone(number) if isinstance(number, str) else None
    if not phone:
        return None, "number must be a valid E.164 phone number"
    if not isinstance(prompt, str) or not prompt.strip():
        return None, "prompt must be the text the callee hears first"
    if len(prompt) > MAX_PROMPT_CHARS:
        return None, f"prompt is longer than {MAX_PROMPT_CHARS} characters"
    if context is not None:
        if not isinstance(context, dict) or len(context) > MAX_CONTEXT_ITEMS:
            return None, f"context must be a mapping of at most {MAX_CONTEXT_ITEMS} strings"
        for key, value in context.items():
            if not isinstance(key, str) or not isinstance(value, str) or len(key) + len(value) > MAX_CONTEXT_CHARS:
                return None, f"context must map short strings to short strings (at most {MAX_CONTEXT_CHARS} characters)"
    return phone, None


def new_token() -> str:
    """A fresh unguessable answer token (URL-safe)."""
    return secrets.token_urlsafe(24)


def token_key(token: str) -> str:
    """``{p}:voice:outbound:{h(token)}``: the token is a credential, so only its hash names the key."""
    return Keys().voice_outbound(hashlib.sha256(token.encode("utf-8")).hexdigest())


def answer_url(base: str, channel: str, token: str) -> str:
    """Where the provider fetches the call's first document once the callee answers."""
    return f"{base.rstrip('/')}/webhooks/{channel}/outbound?token={token}"


def status_url(base: str, channel: str) -> str:
    """The channel's existing status callback route."""
    return f"{base.rstrip('/')}/webhooks/{channel}/status"


def store(redis: Any, token: str, call: OutboundCall, ttl: int = TOKEN_TTL) -> None:
    """Keep the token's call for ``ttl`` seconds (blocking)."""
    key = token_key(token)
    pipe = redis.pipeline(transaction=True)
    pipe.hset(key, mapping={"customer_id": call.customer_id, "prompt": call.prompt,
                            "context": json.dumps(call.context, sort_keys=True)})
    pipe.expire(key, ttl)
    pipe.execute()


def discard(redis: Any, token: str) -> None:
    """Forget a token whose call was never placed (blocking)."""
    redis.delete(token_key(token))


# KEYS: the token. ARGV: the call id. Returns "first" (claimed now), "replay"
# (already claimed by this call: a retried answer webhook) or "" (unknown,
# expired, or used by another call). The key keeps its expiry.
_CLAIM_LUA = """
local found = redis.call('HMGET', KEYS[1], 'customer_id', 'call_id')
if not found[1] then return '' end
if not found[2] then
  redis.call('HSET', KEYS[1], 'call_id', ARGV[1])
  return 'first'
end
if found[2] == ARGV[1] then return 'replay' end
return ''
"""


def _s(value: Any) -> Optional[str]:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def claim(redis: Any, token: Optional[str], call_id: str) -> Tuple[Optional[OutboundCall], bool]:
    """(the token's call, whether this is a retry of the same call's answer), or (None, False).

    A token answers one call only: the first call id that presents it owns it
    (atomically), and only that call's retries get it again.
    """
    if not token or len(token) > 200 or not call_id:
        return None, False
    key = token_key(token)
    verdict = _s(identity.script(redis, "voice_outbound_claim", _CLAIM_LUA)(keys=[key], args=[call_id], client=redis))
    if verdict not in ("first", "replay"):
        return None, False
    raw = {_s(k): _s(v) for k, v in redis.hgetall(key).items()}
    if not raw.get("customer_id"):
        return None, False
    try:
        context = json.loads(raw.get("context") or "{}")
    except ValueError:
        context = {}
    return OutboundCall(raw["customer_id"], raw.get("prompt") or "", context), verdict == "replay"


def bind(redis: Any, channel: str, call_id: str, customer_id: str, ttl: int) -> None:
    """Tie the call's state to the customer (only fields not set yet; blocking).

    Done when the provider accepted the call, so that a busy or unanswered
    call's status is recorded for the customer, and again when it is answered.
    """
    key = Keys().voice_call(channel, call_id)
    pipe = redis.pipeline(transaction=True)
    pipe.hsetnx(key, "customer_id", customer_id)
    pipe.hsetnx(key, "origin", ORIGIN)
    pipe.expire(key, ttl)
    pipe.execute()
