"""Agent sign-in for the desk: hashed tokens, server-side sessions, signed cookies, CSRF.

* Tokens come from ``AGENT_TOKENS`` (``"alice:token-a,bob:token-b"``) and are
  kept in memory only as salted scrypt hashes.
* A session is a random id stored in Redis (``{prefix}:desk:session:{sha256(id)}``,
  expiring after ``AGENT_SESSION_HOURS``, default 12), so signing out ends it on
  every rasa instance. The cookie carries the id and its HMAC under
  ``AGENT_SESSION_SECRET`` (derived from the secret key when unset, so every
  instance of one deployment agrees). It is HttpOnly, SameSite=Strict, scoped
  to the desk's path, and Secure behind HTTPS (through a trusted proxy too).
* Every POST carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``). The sign-in form itself is protected by a token bound to
  a pre-session cookie, so nobody can sign a browser in as someone else.
* Failed sign-ins are counted per client address (behind trusted proxies,
  the forwarded one) in Redis; after ``LOGIN_FAILURE_LIMIT`` within
  ``LOGIN_FAILURE_WINDOW`` seconds, sign-in is refused from that address.
"""
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from threadline import settings
from threadline.keys import Keys

logger = logging.getLogger(__name__)

SESSION_COOKIE = "threadline_agent"
LOGIN_COOKIE = "threadline_agent_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_FAILURE_LIMIT = 10
LOGIN_FAILURE_WINDOW = 300
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# scrypt cost: about 30 ms and 16 MiB per check, paid once per sign-in.
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


def _scrypt(token: str, salt: bytes) -> bytes:
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)


class AgentDirectory:
    """The agents allowed to sign in, each with a hashed token."""

    def __init__(self, spec: Optional[str], variable: str = "AGENT_TOKENS") -> None:
        """Parse ``name:token`` pairs; raises ``ValueError`` naming ``variable`` on a malformed one."""
        self._hashes: Dict[str, Tuple[bytes, bytes]] = {}
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            name, sep, token = item.strip().partition(":")
            if not sep or not _NAME.match(name) or not token:
                raise ValueError(f"{variable}: expected 'name:token' pairs separated by commas, got {name!r}")
            salt = secrets.token_bytes(16)
            self._hashes[name] = (salt, _scrypt(token, salt))
        self._dummy = (secrets.token_bytes(16), secrets.token_bytes(32))

    @property
    def enabled(self) -> bool:
        """Whether any agent is configured (else every sign-in is refused)."""
        return bool(self._hashes)

    def __contains__(self, name: str) -> bool:
        return name in self._hashes

    def verify(self, name: str, token: str) -> bool:
        """Whether ``token`` is ``name``'s; takes the same time for unknown names."""
        salt, expected = self._hashes.get(name, self._dummy)
        given = _scrypt(token or "", salt)
        return hmac.compare_digest(given, expected) and name in self._hashes


@dataclass(frozen=True)
class Session:
    """A signed-in agent."""

    id: str
    agent: str
    csrf: str


class SessionStore:
    """Sessions in Redis, and the signed cookie that names them."""

    def __init__(self, secret: Optional[str] = None, redis: Any = None) -> None:
        self._secret = (secret or settings.get().secret("agent_session_secret")).encode("utf-8")
        self._redis = redis
        self.ttl = int(settings.get().number("AGENT_SESSION_HOURS") * 3600)

    def redis(self) -> Any:
        """The Redis client (the shared one unless one was injected)."""
        if self._redis is not None:
            return self._redis
        from threadline.redis_client import get_client

        return get_client()

    def _key(self, session_id: str) -> str:
        return Keys().desk_session(hashlib.sha256(session_id.encode()).hexdigest())

    def sign(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the session secret, hex."""
        return hmac.new(self._secret, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def cookie_value(self, session: Session) -> str:
        """``<session id>.<hmac>``."""
        return f"{session.id}.{self.sign(session.id)}"

    def create(self, agent: str) -> Session:
        """Start a session for ``agent`` (blocking)."""
        session = Session(secrets.token_urlsafe(32), agent, secrets.token_urlsafe(32))
        record = json.dumps({"agent": agent, "csrf": session.csrf, "created": time.time()})
        self.redis().set(self._key(session.id), record, ex=self.ttl)
        return session

    def load(self, cookie: Optional[str]) -> Optional[Session]:
        """The session a cookie names, if its signature holds and it has not ended (blocking)."""
        if not cookie or "." not in cookie:
            return None
        session_id, _, signature = cookie.rpartition(".")
        if not signature.isascii() or not hmac.compare_digest(signature.encode(), self.sign(session_id).encode()):
            return None
        raw = self.redis().get(self._key(session_id))
        if raw is None:
            return None
        record = json.loads(raw)
        return Session(session_id, record["agent"], record["csrf"])

    def end(self, session: Session) -> None:
        """Sign out (blocking)."""
        self.redis().delete(self._key(session.id))

    def login_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token, bound to the pre-session cookie ``nonce``."""
        return self.sign("login:" + nonce)

    def login_token_ok(self, nonce: Optional[str], given: Optional[str]) -> bool:
        """Whether a sign-in form came with the token of the browser's pre-session cookie."""
        return bool(nonce and given) and given.isascii() and hmac.compare_digest(
            given.encode(), self.login_token(nonce).encode())

    def failures(self, client: str) -> int:
        """Failed sign-ins from ``client`` in the current window (blocking)."""
        return int(self.redis().get(self._failure_key(client)) or 0)

    def record_failure(self, client: str) -> None:
        """Count a failed sign-in from ``client`` (blocking)."""
        key = self._failure_key(client)
        pipe = self.redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, LOGIN_FAILURE_WINDOW)
        pipe.execute()

    def _failure_key(self, client: str) -> str:
        return Keys().limit("desk-fail", self.sign("client:" + client)[:32])


def csrf_ok(session: Session, given: Optional[str]) -> bool:
    """Whether a POST carries the session's CSRF token."""
    return bool(given) and given.isascii() and hmac.compare_digest(given.encode(), session.csrf.encode())
