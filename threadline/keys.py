"""Every Redis key Threadline uses, named in one place.

``Keys(prefix)`` builds them; ``LAYOUT`` documents them (the README's Redis
layout is generated from it with ``python -m threadline.keys --markdown`` and a
test keeps the two in step, and another that no module spells a key itself).
``{p}`` is ``THREADLINE_KEY_PREFIX``; ``h(x)`` is the HMAC of ``x`` under the
identity pepper, so no key names a phone number or platform user id.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import List, Optional

from threadline import settings as settings_module


@dataclass(frozen=True)
class KeySpec:
    """One key (or family of keys): its pattern, Redis type, lifetime and meaning."""

    pattern: str
    type: str
    ttl: str
    meaning: str
    area: str


LAYOUT: List[KeySpec] = [
    # conversations
    KeySpec("{p}:tracker:ev:{customer}", "list", "retention", "the conversation's events, append-only, as JSON", "conversation"),
    KeySpec("{p}:tracker:ss:{customer}", "list", "retention", "offsets where each session starts", "conversation"),
    KeySpec("{p}:tracker:dg:{customer}", "set", "retention", "digests of the stored events (no event is stored twice)", "conversation"),
    KeySpec("{p}:lock:q:{customer}", "zset", "lock lifetime", "the conversation's live lock tickets (`<ticket>:<expiry ms>`, scored by ticket); the lowest is served", "conversation"),
    KeySpec("{p}:events:outbox", "stream", "until relayed", "conversation events waiting for the event broker (written with the event log, in the same script; `s` customer, `d` digest, `e` event)", "conversation"),
    KeySpec("{p}:events:relay", "string", "30 s, renewed", "the event relay holding the lease (one relays at a time, in order)", "conversation"),
    KeySpec("{p}:lock:n:{customer}", "string", "lock lifetime", "the conversation's next lock ticket number", "conversation"),
    # identity
    KeySpec("{p}:id:ch:{channel}:{h(user)}", "hash", "none", "one channel identity: `cid`, `trust`, `origin`", "identity"),
    KeySpec("{p}:id:phone:{h(e164)}", "string", "none", "verified phone number -> customer id", "identity"),
    KeySpec("{p}:id:webref:{h(ref)}", "string", "none", "signed web identity -> customer id", "identity"),
    KeySpec("{p}:id:cust:{customer}", "hash", "none", "the customer: `addr:{channel}` -> user id, `seen:{channel}` -> time, `last_channel`, `webref`", "identity"),
    KeySpec("{p}:id:cust:{customer}:idx", "set", "none", "the index keys naming this customer (re-pointed on a merge)", "identity"),
    KeySpec("{p}:id:code:{h(code)}", "string", "10 min", "a live link code -> customer, trust, origin and the identity it was issued to", "identity"),
    KeySpec("{p}:id:pending:{id}", "string", "10 min", "a link waiting for the customer's confirmation on their verified channel", "identity"),
    KeySpec("{p}:id:owner:{h(identifier)}", "string", "1 h", "business customer with this verified phone or web ref (cache)", "identity"),
    KeySpec("{p}:id:owner-of:{h(channel:user)}", "string", "none", "business customer a channel identity proved to be (phone, confirmed link)", "identity"),
    # budgets and limits
    KeySpec("{p}:limit:{name}:{h(subject)}", "string", "its window", "a counter of one rate limit or failure budget", "limits"),
    KeySpec("{p}:stepup:{h(channel:user)}:{record}", "string", "30 min or the call", "step-up passed for one order or appointment by one channel identity", "limits"),
    KeySpec("{p}:stepup:lock:{record}", "string", "`STEPUP_LOCK_SECONDS`", "step-up locked for a record after too many wrong answers", "limits"),
    # delivery
    KeySpec("{p}:dedupe:{channel}:{message id}", "string", "`DEDUPE_TTL_SECONDS`", "`lease:<t>` while it is being processed; `done:<customer>` once the turn is stored; `sent` once its replies went out too", "delivery"),
    KeySpec("{p}:dedupe-resend:{channel}:{message id}", "string", "2 min", "`lease:<t>` of the process resending a stored turn's replies (WhatsApp, Telegram)", "delivery"),
    KeySpec("{p}:payload:{channel}:{digest}", "string", "30 days", "a button payload too long for the platform", "delivery"),
    KeySpec("{p}:outbound:failed", "sorted set", "`OUTBOUND_FAILED_TTL_DAYS`", "undelivered messages by time, for `make replay-failed`", "delivery"),
    KeySpec("{p}:outbound:failed:{id}", "string", "`OUTBOUND_FAILED_TTL_DAYS`", "one undelivered message (customer, channel, response; no address)", "delivery"),
    KeySpec("{p}:whatsapp:window:{customer}", "string", "24 h", "exists while WhatsApp's customer-service window is open", "delivery"),
    KeySpec("{p}:whatsapp:choices:{customer}", "hash", "24 h", "numbered options offered as text -> payloads", "delivery"),
    KeySpec("{p}:whatsapp:status:{wamid}", "hash", "7 days", "delivery statuses of one of our WhatsApp messages", "delivery"),
    KeySpec("{p}:webchat:offered:{customer}", "set", "24 h", "button payloads the web chat offered (typed `/payload` accepted)", "delivery"),
    KeySpec("{p}:webchat:outbox:{visitor}", "list", "7 days", "bot messages waiting for a visitor who is not connected", "delivery"),
    KeySpec("{p}:webchat:replies:{message id}", "string", "10 min", "replies to a REST message, replayed to a client's retry", "delivery"),
    KeySpec("{p}:webchat:presence:{visitor}", "hash", "24 h", "`{replica}:{socket|stream}` -> live connections of the visitor on that rasa replica", "delivery"),
    KeySpec("{p}:webchat:replica:{replica}", "string", "30 s, refreshed", "a rasa replica holding web connections is alive", "delivery"),
    KeySpec("{p}:webchat:streams", "pub/sub channel", "-", "bot messages for event streams held by another replica", "delivery"),
    KeySpec("{p}:webchat:socketio", "pub/sub channel", "-", "python-socketio's Redis manager (JSON): emits reach the replica holding the socket", "delivery"),
    # consent and personal data
    KeySpec("{p}:consent:{customer}", "hash", "none", "current consent, `{channel}:{purpose}` -> `granted`/`revoked`: the projection of the ledger in the business database", "personal data"),
    KeySpec("{p}:vault:{token}", "string", "`VAULT_TTL_SECONDS`", "one email or phone number behind a token: AES-GCM ciphertext and its customer", "personal data"),
    KeySpec("{p}:vault:cust:{customer}", "set", "`VAULT_TTL_SECONDS`", "the tokens minted for one customer (erasure)", "personal data"),
    KeySpec("{p}:erasure:pending:{customer}", "string", "10 min", "an erasure the customer confirmed, carried out when the turn is saved", "personal data"),
    # voice
    KeySpec("{p}:voice:call:{channel}:{call id}", "hash", "6 h", "one call: customer, turn, last prompt, no-input count, statuses", "voice"),
    KeySpec("{p}:voice:choices:{channel}:{call id}", "hash", "1 h", "keypad digit or spoken title -> payload", "voice"),
    KeySpec("{p}:voice:events", "stream", "100k entries", "call-quality events of every call", "voice"),
    KeySpec("{p}:voice:live:{customer}", "string", "2 min, refreshed each turn", "the call the customer is on now (channel, call, origin)", "voice"),
    KeySpec("{p}:voice:pending:{channel}:{call id}", "list", "the call", "agent messages waiting to be spoken at the caller's next turn", "voice"),
    KeySpec("{p}:voice:outbound:{h(token)}", "hash", "1 h", "an outbound call's single-use answer token: customer, prompt, context, then the call that used it", "voice"),
    KeySpec("{p}:prefetch:{customer}", "string", "`PREFETCH_TTL_SECONDS`", "lookups made while a call starts", "voice"),
    KeySpec("{p}:trace:last:{customer}", "string", "24 h", "the customer's last traced turn (`channel`, trace and span id; no personal data), linked from their next turn on another channel", "conversation"),
    KeySpec("{p}:analytics:consumer", "string", "30 s, renewed", "the analytics consumer holding the lease (one folds events at a time, in order)", "conversation"),
    # journeys
    KeySpec("{p}:journeys:waiting:{customer}", "string", "30 days", "the customer has an active journey: their next message ends its wait", "journeys"),
    KeySpec("{p}:journeys:worker", "string", "lease, renewed", "the one journey worker allowed on SQLite (PostgreSQL runs several)", "journeys"),
    # desk
    KeySpec("{p}:desk", "pub/sub channel", "-", "case changes, followed by every desk server", "desk"),
    KeySpec("{p}:desk:events", "pub/sub channel", "-", "customer, bot and agent messages; a server follows it only while a desk page is open on it", "desk"),
    KeySpec("{p}:desk:session:{sha256(id)}", "string", "`AGENT_SESSION_HOURS`", "one signed-in agent", "desk"),
]


class Keys:
    """Builds the keys of ``LAYOUT`` under one prefix."""

    def __init__(self, prefix: Optional[str] = None) -> None:
        self.prefix = prefix or settings_module.get().key_prefix

    def _k(self, *parts: object) -> str:
        return ":".join((self.prefix,) + tuple(str(part) for part in parts))

    # conversations
    def tracker(self, kind: str, customer_id: str) -> str:
        """``{p}:tracker:{ev|ss|dg}:{customer}``."""
        return self._k("tracker", kind, customer_id)

    def tracker_prefix(self) -> str:
        """``{p}:tracker:``, what tracker keys start with."""
        return self._k("tracker") + ":"

    def event_outbox(self) -> str:
        """``{p}:events:outbox``."""
        return self._k("events", "outbox")

    def event_relay_lease(self) -> str:
        """``{p}:events:relay``."""
        return self._k("events", "relay")

    def lock_prefix(self) -> str:
        """``{p}:lock:``, what lock keys start with."""
        return self._k("lock") + ":"

    def lock_queue(self, customer_id: str) -> str:
        """``{p}:lock:q:{customer}``."""
        return self._k("lock", "q", customer_id)

    def lock_next(self, customer_id: str) -> str:
        """``{p}:lock:n:{customer}``."""
        return self._k("lock", "n", customer_id)

    # identity (``hashed`` parts are already HMACs)
    def identity(self, *parts: str) -> str:
        """``{p}:id:...``."""
        return self._k("id", *parts)

    def identity_prefix(self) -> str:
        """``{p}:id:``."""
        return self._k("id") + ":"

    # limits
    def limit(self, name: str, hashed_subject: str) -> str:
        """``{p}:limit:{name}:{h(subject)}``."""
        return self._k("limit", name, hashed_subject)

    def stepup(self, hashed_identity: str, record: str) -> str:
        """``{p}:stepup:{h(channel:user)}:{record}``."""
        return self._k("stepup", hashed_identity, record)

    def stepup_lock(self, record: str) -> str:
        """``{p}:stepup:lock:{record}``."""
        return self._k("stepup", "lock", record)

    # delivery
    def dedupe(self, channel: str, message_id: str) -> str:
        """``{p}:dedupe:{channel}:{message id}``."""
        return self._k("dedupe", channel, message_id)

    def dedupe_resend(self, channel: str, message_id: str) -> str:
        """``{p}:dedupe-resend:{channel}:{message id}``: who resends a stored turn's replies."""
        return self._k("dedupe-resend", channel, message_id)

    def payload(self, channel: str, digest: str) -> str:
        """``{p}:payload:{channel}:{digest}``."""
        return self._k("payload", channel, digest)

    def outbound_failed(self) -> str:
        """``{p}:outbound:failed``."""
        return self._k("outbound", "failed")

    def outbound_failed_item(self, item_id: str) -> str:
        """``{p}:outbound:failed:{id}``."""
        return self._k("outbound", "failed", item_id)

    def whatsapp(self, kind: str, ident: str) -> str:
        """``{p}:whatsapp:{window|choices|status}:{id}``."""
        return self._k("whatsapp", kind, ident)

    def webchat(self, kind: str, ident: str) -> str:
        """``{p}:webchat:{offered|outbox|replies}:{id}``."""
        return self._k("webchat", kind, ident)

    def web_presence(self, visitor_id: str) -> str:
        """``{p}:webchat:presence:{visitor}``."""
        return self._k("webchat", "presence", visitor_id)

    def web_replica(self, replica: str) -> str:
        """``{p}:webchat:replica:{replica}``."""
        return self._k("webchat", "replica", replica)

    def web_streams_channel(self) -> str:
        """``{p}:webchat:streams``."""
        return self._k("webchat", "streams")

    def socketio_channel(self) -> str:
        """``{p}:webchat:socketio``."""
        return self._k("webchat", "socketio")

    def trace_last(self, customer_id: str) -> str:
        """``{p}:trace:last:{customer}``."""
        return self._k("trace", "last", customer_id)

    # consent and personal data
    def analytics_lease(self) -> str:
        """``{p}:analytics:consumer``."""
        return self._k("analytics", "consumer")

    def journeys_waiting(self, customer_id: str) -> str:
        """``{p}:journeys:waiting:{customer}``."""
        return self._k("journeys", "waiting", customer_id)

    def journeys_worker_lease(self) -> str:
        """``{p}:journeys:worker``."""
        return self._k("journeys", "worker")

    def consent(self, customer_id: str) -> str:
        """``{p}:consent:{customer}``."""
        return self._k("consent", customer_id)

    def erasure_pending(self, customer_id: str) -> str:
        """``{p}:erasure:pending:{customer}``."""
        return self._k("erasure", "pending", customer_id)

    def vault(self, token_id: str) -> str:
        """``{p}:vault:{token}``."""
        return self._k("vault", token_id)

    def vault_index(self, customer_id: str) -> str:
        """``{p}:vault:cust:{customer}``."""
        return self._k("vault", "cust", customer_id)

    # voice
    def voice_call(self, channel: str, call_id: str) -> str:
        """``{p}:voice:call:{channel}:{call id}``."""
        return self._k("voice", "call", channel, call_id)

    def voice_choices(self, channel: str, call_id: str) -> str:
        """``{p}:voice:choices:{channel}:{call id}``."""
        return self._k("voice", "choices", channel, call_id)

    def voice_events(self) -> str:
        """``{p}:voice:events``."""
        return self._k("voice", "events")

    def voice_live(self, customer_id: str) -> str:
        """``{p}:voice:live:{customer}``."""
        return self._k("voice", "live", customer_id)

    def voice_pending(self, channel: str, call_id: str) -> str:
        """``{p}:voice:pending:{channel}:{call id}``."""
        return self._k("voice", "pending", channel, call_id)

    def voice_outbound(self, token_digest: str) -> str:
        """``{p}:voice:outbound:{h(token)}`` (the token itself is never a key)."""
        return self._k("voice", "outbound", token_digest)

    def prefetch(self, customer_id: str) -> str:
        """``{p}:prefetch:{customer}``."""
        return self._k("prefetch", customer_id)

    # desk
    def desk_channel(self) -> str:
        """``{p}:desk`` (case changes)."""
        return self._k("desk")

    def desk_events_channel(self) -> str:
        """``{p}:desk:events`` (conversation messages, followed only while a desk page is open)."""
        return self._k("desk", "events")

    def desk_session(self, digest: str) -> str:
        """``{p}:desk:session:{sha256(id)}``."""
        return self._k("desk", "session", digest)


def keys() -> Keys:
    """Keys under the configured prefix."""
    return Keys()


def markdown_table() -> str:
    """The README's Redis layout."""
    lines = ["| Key | Type | Lifetime | What it holds |", "| --- | --- | --- | --- |"]
    for spec in LAYOUT:
        lines.append(f"| `{spec.pattern}` | {spec.type} | {spec.ttl} | {spec.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown_table())
    else:
        print("usage: python -m threadline.keys --markdown")
