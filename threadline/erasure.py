"""Erasure and export of one customer's data (GDPR articles 17 and 15/20).

``erase(customer_id)`` removes, for the customer and every channel identity
linked to it (a link merges conversations, so they share one customer id):

* the conversation (the tracker store's event log, every session);
* the identity index entries (``threadline.identity.forget_customer``), the
  owner proofs of its channel identities, the consent projection and the
  per-customer channel state (WhatsApp window and choices, web chat offers,
  prefetched lookups);
* the vault values (every token minted for it, and any token its
  conversation carried);
* undelivered messages kept for replay;
* personal fields in the business database: appointment contact emails,
  handoff case context, messages and resolutions, feedback comments and, when
  the customer was proven to be a business customer, that customer's name,
  email, phone, web reference and the orders' addresses.

What stays: an HMAC of each identifier (customer id, channel identities,
phone numbers, emails) in the suppression list (``erased_identifiers``), the
consent ledger and suppressed sends under the customer's HMAC (the proof that
an opt-out was honoured), and one ``erasure`` row in the audit log.

A customer asks in the conversation ("delete my data", confirmed): the action
server calls ``request``, and the rasa server's tracker store carries the
erasure out when it would save that turn, so nothing of it is written back.
An operator runs ``python -m threadline.erasure erase --customer c_...`` (or
``--phone +1...``) and ``export --customer c_...`` (JSON on stdout).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import sys
from typing import Any, Dict, Iterable, List, Optional, Set

from threadline import identity, outbound_failures, pii, redis_client, vault
from threadline import settings as settings_module
from threadline.keys import Keys

logger = logging.getLogger(__name__)

PENDING_TTL = 600
_TOKEN_IDS = re.compile(r"email-([a-z2-7]{16})@token\.invalid|<PHONE_NUMBER:([a-z2-7]{16})>")


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


def digest(kind: str, value: str) -> str:
    """The suppression-list HMAC of one identifier (never reversible without the vault key)."""
    key = settings_module.get().secret("vault_key").encode()
    return hmac.new(key, f"erased:{kind}:{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()


def pseudonym(customer_id: str) -> str:
    """What the ledger and the audit log call an erased customer."""
    return "erased:" + digest("customer", customer_id)[:24]


# ----------------------------------------------------------------- requests


def _pending_key(customer_id: str) -> str:
    return Keys().erasure_pending(customer_id)


def request(customer_id: str, owner: Optional[int] = None, actor: str = "customer", redis: Any = None) -> None:
    """Ask for the customer's erasure once the current turn is over (the tracker store does it)."""
    _redis(redis).set(_pending_key(customer_id), json.dumps({"owner": owner, "actor": actor}), ex=PENDING_TTL)


def pending(customer_id: str, redis: Any = None) -> Optional[Dict[str, Any]]:
    """The erasure asked for this customer, if any."""
    raw = _redis(redis).get(_pending_key(customer_id))
    return json.loads(raw) if raw else None


# ------------------------------------------------------------------ reading


def _events(customer_id: str, r: Any) -> List[Dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange(Keys().tracker("ev", customer_id), 0, -1)]


def _tokens_in(events: Iterable[Dict[str, Any]]) -> Set[str]:
    found = set()
    for event in events:
        for match in _TOKEN_IDS.finditer(json.dumps(event)):
            found.add(match.group(1) or match.group(2))
    return found


def _owner_of(customer_id: str, r: Any) -> Optional[int]:
    from threadline import linking

    for known in identity.identities(customer_id, r):
        raw = r.get(linking.owner_key(known["channel"], known["user"]))
        if raw and int(raw):
            return int(raw)
    return None


# ------------------------------------------------------------------ erasure


def erase(customer_id: str, *, owner: Optional[int] = None, actor: str = "operator", redis: Any = None) -> Dict[str, Any]:
    """Erase the customer (see the module docstring); returns what was removed (blocking)."""
    from threadline import linking
    from threadline.db import audit, consent as ledger, personal
    from threadline.journeys import store as journey_store

    r = _redis(redis)
    keys = Keys()
    events = _events(customer_id, r)
    known = identity.identities(customer_id, r)
    owner = owner or _owner_of(customer_id, r)
    identifiers = {("customer", customer_id)}
    identifiers.update(("channel", f"{i['channel']}:{i['user']}") for i in known)
    identifiers.update(("phone", i["user"]) for i in known if i["user"].isdigit())
    tokens = _tokens_in(events) | set(vault.tokens_of(customer_id, r))
    for ident in tokens:  # the raw values behind the customer's tokens go on the suppression list too
        found = vault._open(ident, r.get(keys.vault(ident)))
        if found:
            identifiers.add(("email" if found["kind"] == pii.EMAIL_ADDRESS else "phone", found["value"]))
    removed: Dict[str, Any] = {}
    removed["vault_values"] = vault.forget([customer_id], tokens, redis=r)
    for i in known:
        r.delete(linking.owner_key(i["channel"], i["user"]))
    removed["identity_keys"] = identity.forget_customer(customer_id, r)
    removed["conversation_events"] = len(events)
    state = [keys.tracker(kind, customer_id) for kind in ("ev", "ss", "dg")]
    state += [keys.consent(customer_id), keys.whatsapp("window", customer_id), keys.whatsapp("choices", customer_id),
              keys.webchat("offered", customer_id), keys.prefetch(customer_id), keys.journeys_waiting(customer_id),
              keys.trace_last(customer_id)]
    r.delete(*state)
    removed["failed_sends"] = _forget_failed_sends(customer_id, r)
    removed["journeys"] = journey_store.erase_customer(customer_id)
    business = personal.erase(customer_id, owner, pseudonym(customer_id))
    removed.update(business.pop("counts"))
    identifiers.update(business["identifiers"])
    removed["ledger_rows"] = ledger.pseudonymise([customer_id], pseudonym(customer_id))
    removed["audit_rows"] = audit.pseudonymise([customer_id], pseudonym(customer_id))
    personal.suppress((kind, digest(kind, value)) for kind, value in identifiers)
    removed["suppressed_identifiers"] = len(identifiers)
    audit.record(actor, "erasure", pseudonym(customer_id), removed)
    r.delete(_pending_key(customer_id))
    logger.info("erasure of %s by %s: %s", pseudonym(customer_id), actor, removed)
    return removed


def _forget_failed_sends(customer_id: str, r: Any) -> int:
    gone = 0
    for failure in outbound_failures.pending(limit=100000, redis=r):
        if failure.customer_id == customer_id and outbound_failures.claim(failure.id, redis=r) is not None:
            gone += 1
    return gone


def is_erased(kind: str, value: str) -> bool:
    """Whether this identifier belonged to an erased customer (the suppression list)."""
    from threadline.db import personal

    return personal.is_suppressed(digest(kind, value))


# ------------------------------------------------------------------- export


def export(customer_id: str, *, actor: str = "operator", redis: Any = None) -> Dict[str, Any]:
    """Everything kept about the customer, as JSON-ready data (blocking); the export is audited."""
    from threadline.db import audit, consent as ledger, personal
    from threadline.journeys import store as journey_store

    r = _redis(redis)
    events = _events(customer_id, r)
    values = {}
    for ident in sorted(_tokens_in(events) | set(vault.tokens_of(customer_id, r))):
        found = vault._open(ident, r.get(Keys().vault(ident)))
        if found:
            values[ident] = {"kind": found["kind"], "value": found["value"]}
    owner = _owner_of(customer_id, r)
    data = {
        "customer_id": customer_id,
        "channels": identity.identities(customer_id, r),
        "conversation": [
            {k: event.get(k) for k in ("event", "timestamp", "text", "name", "value") if event.get(k) is not None}
            for event in events if event.get("event") in ("user", "bot", "slot")
        ],
        "tokenized_values": values,
        "consent": ledger.history(customer_id),
        "suppressed_sends": ledger.suppressed(customer_id),
        "business": personal.export(customer_id, owner),
        "journeys": journey_store.list_instances(customer_ref=customer_id, limit=1000),
    }
    audit.record(actor, "export", customer_id, {"events": len(events), "tokenized_values": len(values)})
    return data


# -------------------------------------------------------------------- CLI


def _customer(args: argparse.Namespace) -> Optional[str]:
    if args.customer:
        return args.customer
    e164 = identity.normalise_phone(args.phone) if args.phone else None
    return identity.customer_for_phone(e164) if e164 else None


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m threadline.erasure erase|export --customer c_... | --phone +1...``."""
    parser = argparse.ArgumentParser(prog="python -m threadline.erasure", description="erase or export a customer's data")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("erase", "erase the customer's data (GDPR art. 17)"),
                            ("export", "print the customer's data as JSON (GDPR art. 15 and 20)")):
        command = commands.add_parser(name, help=help_text)
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--customer", help="the customer id (c_...)")
        who.add_argument("--phone", help="a verified phone number of the customer (E.164)")
        command.add_argument("--operator", default="operator", help="who runs it (for the audit log)")
    args = parser.parse_args(argv)
    customer_id = _customer(args)
    if not customer_id:
        print("no such customer", file=sys.stderr)
        return 1
    if args.command == "erase":
        request(customer_id, actor=f"operator:{args.operator}")  # a turn in flight erases again on its save
        removed = erase(customer_id, actor=f"operator:{args.operator}")
        print(json.dumps({"erased": pseudonym(customer_id), "removed": removed}, indent=2, default=str))
    else:
        print(json.dumps(export(customer_id, actor=f"operator:{args.operator}"), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
