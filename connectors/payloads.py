"""Button payloads too long for a platform, kept in Redis under a short key.

Platforms cap what a button can carry (Telegram ``callback_data``: 64 bytes;
WhatsApp reply ids: 256 characters). ``alias_payload`` stores a longer payload
under a key derived from it (so re-sending the same button reuses it) and
returns ``~p:<key>``; ``resolve_payload`` turns that back into the payload.
Both are blocking.
"""
import hashlib
import logging
from typing import Any

from threadline.keys import Keys

logger = logging.getLogger(__name__)

ALIAS_PREFIX = "~p:"
ALIAS_TTL = 30 * 24 * 3600


def alias_payload(channel: str, payload: str, max_bytes: int, redis: Any, ttl: int = ALIAS_TTL) -> str:
    """``payload`` if it fits in ``max_bytes``, else a short key for it stored in Redis."""
    if len(payload.encode("utf-8")) <= max_bytes and not payload.startswith(ALIAS_PREFIX):
        return payload
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
    redis.set(Keys().payload(channel, digest), payload, ex=ttl)
    return ALIAS_PREFIX + digest


def resolve_payload(channel: str, value: str, redis: Any) -> str:
    """The payload behind a key made by ``alias_payload`` (or ``value`` itself)."""
    if not value.startswith(ALIAS_PREFIX):
        return value
    stored = redis.get(Keys().payload(channel, value[len(ALIAS_PREFIX):]))
    if stored is None:
        logger.warning("%s: button payload %s expired or unknown", channel, value)
        return value
    return stored.decode("utf-8") if isinstance(stored, bytes) else stored
