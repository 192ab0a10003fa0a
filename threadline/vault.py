"""The token vault: emails and phone numbers fulfillment needs, encrypted, behind tokens.

``store`` (called by the masking at ingestion, ``threadline.pii``) encrypts
the raw value with AES-GCM under a key derived from
``settings.secret("vault_key")`` (``THREADLINE_VAULT_KEY``, else derived from
the master secret) and keeps it in Redis for ``VAULT_TTL_SECONDS``, under a
token id that is an HMAC of the customer, the kind and the value (the same
address typed twice is one token). The text everyone else sees (the tracker,
the desk, logs) carries the token only.

``resolve`` gives the raw value back; only the action server calls it
(``actions/personal_data.py``), and every lookup is audited in the business
database (``audit_log``). ``forget`` removes a customer's values (erasure).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from typing import Any, Iterable, List, Optional

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from threadline import redis_client
from threadline import settings as settings_module
from threadline.keys import Keys

logger = logging.getLogger(__name__)


def _redis(redis: Any) -> Any:
    return redis if redis is not None else redis_client.get_client()


def _key_material() -> bytes:
    return hashlib.sha256(settings_module.get().secret("vault_key").encode()).digest()


def _ttl() -> int:
    return settings_module.get().integer("VAULT_TTL_SECONDS")


def token_for(kind: str, value: str, customer_id: str) -> str:
    """The token id of ``value`` for ``customer_id`` (16 base32 characters)."""
    digest = hmac.new(_key_material(), f"token:{customer_id}:{kind}:{_normal(kind, value)}".encode(),
                      hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def _normal(kind: str, value: str) -> str:
    value = value.strip()
    if kind == "EMAIL_ADDRESS":
        return value.lower()
    if kind == "PHONE_NUMBER":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value


def store(kind: str, value: str, customer_id: str, redis: Any = None) -> str:
    """Encrypt ``value`` into the vault for ``customer_id``; returns its token id (blocking)."""
    ident = token_for(kind, value, customer_id)
    nonce = os.urandom(12)
    sealed = AESGCM(_key_material()).encrypt(nonce, value.strip().encode(), f"{ident}:{customer_id}".encode())
    record = json.dumps({"c": customer_id, "k": kind, "v": base64.b64encode(nonce + sealed).decode()})
    keys = Keys()
    ttl = _ttl()
    pipe = _redis(redis).pipeline(transaction=True)
    pipe.set(keys.vault(ident), record, ex=ttl)
    pipe.sadd(keys.vault_index(customer_id), ident)
    pipe.expire(keys.vault_index(customer_id), ttl)
    pipe.execute()
    return ident


def _open(ident: str, raw: Any) -> Optional[dict]:
    if raw is None:
        return None
    record = json.loads(raw)
    blob = base64.b64decode(record["v"])
    try:
        value = AESGCM(_key_material()).decrypt(blob[:12], blob[12:], f"{ident}:{record['c']}".encode())
    except Exception:  # another key, or tampered with: nothing to give
        logger.warning("vault: token %s could not be decrypted", ident)
        return None
    return {"customer_id": record["c"], "kind": record["k"], "value": value.decode()}


def resolve(ident: str, *, actor: str, purpose: str, customer_ref: Optional[str] = None,
            redis: Any = None) -> Optional[str]:
    """The raw value behind token id ``ident``, or None (expired, erased); the lookup is audited."""
    found = _open(ident, _redis(redis).get(Keys().vault(ident)))
    from threadline.db import audit

    audit.record(actor, "vault_resolve", customer_ref or (found or {}).get("customer_id"),
                 {"token": ident, "kind": (found or {}).get("kind"), "purpose": purpose, "found": found is not None})
    return found["value"] if found else None


def tokens_of(customer_id: str, redis: Any = None) -> List[str]:
    """Token ids minted for ``customer_id`` that are still indexed."""
    members = _redis(redis).smembers(Keys().vault_index(customer_id))
    return sorted(m.decode() if isinstance(m, bytes) else m for m in members)


def forget(customer_ids: Iterable[str], extra_tokens: Iterable[str] = (), redis: Any = None) -> int:
    """Delete the vault values of these customers (and these token ids); returns how many went."""
    r = _redis(redis)
    keys = Keys()
    idents = set(extra_tokens)
    index_keys = []
    for customer_id in customer_ids:
        idents.update(tokens_of(customer_id, r))
        index_keys.append(keys.vault_index(customer_id))
    targets = [keys.vault(ident) for ident in sorted(idents)]
    deleted = r.delete(*targets) if targets else 0
    if index_keys:
        r.delete(*index_keys)
    return int(deleted)
