"""Rate limits and failure budgets, counted in Redis so every process agrees.

``Budget`` is a fixed-window counter: ``hit`` counts one request and says
whether it is still within the limit (and, if not, how long to wait);
``spent``/``charge`` count failures (wrong link codes, wrong step-up answers)
separately from successes. Subjects are hashed into the key, so no key names
an address or user id.

``client_address`` is the caller's address behind reverse proxies: a
forwarded address is believed only when the connection comes from one of
``THREADLINE_TRUSTED_PROXIES``.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from threadline.keys import Keys



def count_lua(key: str, window: str, amount: str) -> str:
    """Lua that counts ``amount`` on the fixed-window counter ``key`` into locals ``count`` and ``ttl``.

    The one counting rule of every budget, also inlined where a count must
    share a script with other work (``connectors.dedupe``); the arguments are
    Lua expressions such as ``KEYS[1]``.
    """
    return f"""
local count = redis.call('INCRBY', {key}, {amount})
local ttl = redis.call('TTL', {key})
if ttl < 0 then
  redis.call('EXPIRE', {key}, {window})
  ttl = tonumber({window})
end
"""


# KEYS: counter. ARGV: window seconds, increment. Returns {count, ttl}.
_HIT_LUA = count_lua("KEYS[1]", "ARGV[1]", "ARGV[2]") + "return {count, ttl}\n"


def _digest(subject: str) -> str:
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go ahead, and if not, when it may try again."""

    allowed: bool
    count: int
    retry_after: int = 0


@dataclass
class Budget:
    """``limit`` events per ``window`` seconds per subject, under the name ``name``."""

    name: str
    limit: int
    window: int

    def key(self, keys: Keys, subject: str) -> str:
        """The counter of one subject."""
        return keys.limit(self.name, _digest(subject))

    def hit(self, redis: Any, keys: Keys, subject: str, amount: int = 1) -> Verdict:
        """Count ``amount`` events; allowed while the window's count stays within the limit."""
        script = _script(redis)
        count, ttl = script(keys=[self.key(keys, subject)], args=[self.window, amount], client=redis)
        count, ttl = int(count), max(1, int(ttl))
        return Verdict(count <= self.limit, count, 0 if count <= self.limit else ttl)

    def spent(self, redis: Any, keys: Keys, subject: str) -> Verdict:
        """Whether the subject has used up its budget already (without counting)."""
        key = self.key(keys, subject)
        pipe = redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        raw, ttl = pipe.execute()
        count = int(raw or 0)
        exhausted = count >= self.limit
        return Verdict(not exhausted, count, max(1, int(ttl)) if exhausted else 0)

    def charge(self, redis: Any, keys: Keys, subject: str) -> Verdict:
        """Count one failure; the verdict says whether more attempts are left."""
        verdict = self.hit(redis, keys, subject)
        return Verdict(verdict.count < self.limit, verdict.count, verdict.retry_after)

    def reset(self, redis: Any, keys: Keys, subject: str) -> None:
        """Forget the subject's count (after a success, where that is the rule)."""
        redis.delete(self.key(keys, subject))


_scripts: dict = {}


def _script(redis: Any) -> Any:
    script = _scripts.get(id(redis))
    if script is None or script.registered_client is not redis:
        script = redis.register_script(_HIT_LUA)
        _scripts[id(redis)] = script
    return script


def check_all(redis: Any, keys: Keys, checks: Iterable[Tuple[Budget, str]]) -> Verdict:
    """Hit every (budget, subject); the first refusal wins, with the longest wait."""
    refused: List[Verdict] = []
    last = Verdict(True, 0)
    for budget, subject in checks:
        last = budget.hit(redis, keys, subject)
        if not last.allowed:
            refused.append(last)
    if refused:
        return max(refused, key=lambda v: v.retry_after)
    return last


# ------------------------------------------------------------ client address


def parse_networks(items: Iterable[str]) -> List[Any]:
    """Addresses and networks (``10.0.0.0/8``, ``127.0.0.1``); raises ValueError naming a bad one."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"THREADLINE_TRUSTED_PROXIES: {item!r} is not an address or network") from None
    return networks


def _trusted(address: str, networks: List[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: Optional[str], headers: Mapping[str, str], trusted: List[Any]) -> str:
    """The client's address: the peer, or, behind trusted proxies, the first untrusted forwarded hop."""
    address = (peer or "").strip() or "unknown"
    if not trusted or not _trusted(address, trusted):
        return address
    forwarded = headers.get("x-forwarded-for") or ""
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else address


def forwarded_scheme(peer: Optional[str], headers: Mapping[str, str], trusted: List[Any], scheme: str) -> str:
    """The scheme the client used: ``X-Forwarded-Proto`` from a trusted proxy, else the connection's."""
    if trusted and peer and _trusted(peer, trusted):
        proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return scheme
