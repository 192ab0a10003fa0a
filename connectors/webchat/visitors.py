"""Web visitors: the token that proves a browser holds its visitor id, and per-visitor state.

A visitor id (32 hex characters, random) is the web chat's channel user id;
it appears in the conversation's metadata and on the desk. What a browser
presents is the **visitor token** ``<visitor id>.<proof>``, the proof being an
HMAC of the id under a server key (``settings.secret("visitor_key")``), issued
by ``POST /webhooks/webchat/session`` (or in ``session_confirm`` on socket.io).
Knowing someone's visitor id therefore does not let anyone into their chat:
every REST message, event stream and socket.io session must show the token.

The rest is per-visitor or per-customer state in Redis: button payloads the
bot offered (``remember_offered``), bot messages waiting for a visitor who is
not connected (``outbox_*``), and REST replies cached for a client's retry.
"""
import hashlib
import hmac
import json
import logging
import re
import uuid
from typing import Any, Dict, Iterable, List, Optional

from threadline import settings
from threadline.keys import Keys

logger = logging.getLogger(__name__)

VISITOR_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
TOKEN_RE = re.compile(r"^([A-Za-z0-9_-]{16,128})\.([0-9a-f]{32})$")
OFFERED_TTL = 24 * 3600
REPLY_CACHE_TTL = 600
OUTBOX_LIMIT = 50
OUTBOX_TTL = 7 * 24 * 3600


def new_visitor_id() -> str:
    """A fresh unguessable visitor id (32 hex characters)."""
    return uuid.uuid4().hex


def _proof(visitor_id: str) -> str:
    key = settings.get().secret("visitor_key").encode()
    return hmac.new(key, f"visitor:{visitor_id}".encode(), hashlib.sha256).hexdigest()[:32]


def visitor_token(visitor_id: str) -> str:
    """The token a browser presents for ``visitor_id``."""
    return f"{visitor_id}.{_proof(visitor_id)}"


def new_visitor() -> Dict[str, str]:
    """A new visitor: its id and its token."""
    visitor_id = new_visitor_id()
    return {"visitor": visitor_id, "sender": visitor_token(visitor_id)}


def visitor_from_token(token: Any) -> Optional[str]:
    """The visitor id a token proves, or None for anything else (constant-time check)."""
    if not isinstance(token, str):
        return None
    match = TOKEN_RE.match(token.strip())
    if not match:
        return None
    visitor_id, proof = match.groups()
    return visitor_id if hmac.compare_digest(proof, _proof(visitor_id)) else None


def token_problem(token: Any) -> str:
    """Why ``token`` is not a visitor token, in words for the client."""
    if not isinstance(token, str) or not token.strip():
        return "sender is missing: get a visitor token from POST /webhooks/webchat/session"
    if VISITOR_ID_RE.match(token.strip()):
        return ("sender is a bare visitor id; send the visitor token (id.proof) that "
                "POST /webhooks/webchat/session issued")
    if not TOKEN_RE.match(token.strip()):
        return "sender is not a visitor token (expected <16-128 letters, digits, '-' or '_'>.<32 hex digits>)"
    return "sender's proof does not match its visitor id: get a new token from POST /webhooks/webchat/session"


def visitor_room(visitor_id: str) -> str:
    """The socket.io room of a visitor (prefixed so it never equals a socket id)."""
    return "visitor:" + visitor_id


def remember_offered(customer_id: str, payloads: Iterable[str], redis: Any) -> None:
    """Remember button payloads the bot offered ``customer_id`` (blocking)."""
    payloads = [p for p in payloads if isinstance(p, str) and p]
    if not payloads:
        return
    key = Keys().webchat("offered", customer_id)
    pipe = redis.pipeline(transaction=False)
    pipe.sadd(key, *payloads)
    pipe.expire(key, OFFERED_TTL)
    pipe.execute()


def was_offered(customer_id: str, payload: str, redis: Any) -> bool:
    """Whether the bot offered ``payload`` to ``customer_id`` within the last day."""
    return bool(redis.sismember(Keys().webchat("offered", customer_id), payload))


def outbox_push(visitor_id: str, customer_id: str, message: Dict[str, Any], redis: Any) -> None:
    """Keep a bot response for a visitor who is not connected right now."""
    key = Keys().webchat("outbox", visitor_id)
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, json.dumps({"customer_id": customer_id, "message": message}))
    pipe.ltrim(key, -OUTBOX_LIMIT, -1)
    pipe.expire(key, OUTBOX_TTL)
    pipe.execute()


def outbox_take(visitor_id: str, redis: Any) -> List[Dict[str, Any]]:
    """Remove and return the responses waiting for ``visitor_id``, oldest first."""
    key = Keys().webchat("outbox", visitor_id)
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    raw, _ = pipe.execute()
    items = []
    for item in raw:
        try:
            items.append(json.loads(item))
        except ValueError:
            logger.warning("webchat: unreadable outbox entry for a visitor dropped")
    return items


def cache_replies(message_id: str, replies: List[Dict[str, Any]], redis: Any) -> None:
    """Keep a REST message's replies for a client that retries it."""
    redis.set(Keys().webchat("replies", message_id), json.dumps(replies), ex=REPLY_CACHE_TTL)


def cached_replies(message_id: str, redis: Any) -> List[Dict[str, Any]]:
    """The replies kept for ``message_id`` (empty if none)."""
    raw = redis.get(Keys().webchat("replies", message_id))
    return json.loads(raw) if raw else []
