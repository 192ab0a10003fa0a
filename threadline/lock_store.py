"""Conversation locks in Redis: Rasa's lock store interface, atomic across processes.

Rasa's ``RedisLockStore`` keeps a conversation's ticket lock as one JSON
string and changes it by get -> modify -> set from each process, so two rasa
processes can be handed the same ticket for one conversation, or lose each
other's (rasa#9213), and their turns then interleave. ``RedisTicketLockStore``
keeps the same ticket-lock model (first come, first served; a ticket expires
after its lifetime, so a holder that died frees the conversation) but every
change is one Lua script:

* ``{p}:lock:n:{customer}``: the next ticket number (``INCR``);
* ``{p}:lock:q:{customer}``: the live tickets, a sorted set ordered by ticket
  number, each with its expiry (Redis's own clock, so processes' clocks need
  not agree).

A ticket is served when it is the lowest live one. Waiting polls with a
backoff from 2 ms up to Rasa's ``wait_time_in_seconds`` (Rasa's own store
sleeps the whole second between looks, which is the latency of every second
message to a busy conversation). Configured in endpoints.yml::

    lock_store:
      type: threadline.lock_store.RedisTicketLockStore
      url: ${REDIS_URL}        # optional: else REDIS_URL, else the embedded server
      key_prefix: threadline   # optional; default THREADLINE_KEY_PREFIX
      socket_timeout: 10       # optional, seconds

``RedisUrlLockStore`` is Rasa's own store reached through a URL, kept as the
baseline the benchmark and the tests compare against.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Optional, Text

import redis

from rasa.core.lock import Ticket, TicketLock
from rasa.core.lock_store import (
    DEFAULT_SOCKET_TIMEOUT_IN_SECONDS,
    LOCK_LIFETIME,
    LockError,
    LockStore,
    RedisLockStore,
)
from rasa.utils.endpoints import EndpointConfig

from threadline import redis_client, settings
from threadline.keys import Keys

logger = logging.getLogger(__name__)

FIRST_POLL_SECONDS = 0.002

# Every script reads the time from Redis and drops expired tickets first. The
# queue is scored by ticket number (the order of service); each member is
# "<ticket>:<expiry ms>". A conversation's queue holds a handful of tickets.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local expiry = tonumber(string.match(member, ':(%d+)$'))
  if expiry <= now then redis.call('ZREM', KEYS[1], member) end
end
"""

# KEYS: queue, next. ARGV: lifetime ms. Returns the new ticket.
_ISSUE = _PRELUDE + """
local ticket = redis.call('INCR', KEYS[2]) - 1
local expiry = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], ticket, ticket .. ':' .. expiry)
local ttl = redis.call('PTTL', KEYS[2])
if ttl < tonumber(ARGV[1]) + 1000 then ttl = tonumber(ARGV[1]) + 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return ticket
"""

# KEYS: queue. ARGV: ticket. Returns -1 (expired), 0 (served now) or how many are ahead.
_POSITION = _PRELUDE + """
if #redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return -1 end
return redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
"""

# KEYS: queue, next. ARGV: ticket. Returns how many tickets remain.
_FINISH = _PRELUDE + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return left
"""

# KEYS: queue. Returns the live tickets' members, lowest first, then Redis's time (ms).
_SNAPSHOT = _PRELUDE + """
local tickets = redis.call('ZRANGE', KEYS[1], 0, -1)
table.insert(tickets, tostring(now))
return tickets
"""


class RedisTicketLockStore(LockStore):
    """Rasa's ``LockStore`` with every ticket operation one atomic Redis script."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        url: Optional[Text] = None,
        key_prefix: Optional[Text] = None,
        socket_timeout: Optional[float] = None,
        **_: Any,
    ) -> None:
        """Connect to ``url``, the endpoint's ``url``, ``REDIS_URL`` or the embedded server."""
        kwargs = dict(endpoint_config.kwargs) if endpoint_config else {}
        url = url or (endpoint_config.url if endpoint_config else None) or redis_client.redis_url()
        timeout = float(socket_timeout or kwargs.get("socket_timeout") or DEFAULT_SOCKET_TIMEOUT_IN_SECONDS)
        self.keys = Keys(key_prefix or kwargs.get("key_prefix") or settings.get().key_prefix)
        self.red = redis.Redis.from_url(url, socket_timeout=timeout)
        self._issue = self.red.register_script(_ISSUE)
        self._position = self.red.register_script(_POSITION)
        self._finish = self.red.register_script(_FINISH)
        self._snapshot = self.red.register_script(_SNAPSHOT)
        super().__init__()

    def _queue(self, conversation_id: Text) -> str:
        return self.keys.lock_queue(conversation_id)

    def _next(self, conversation_id: Text) -> str:
        return self.keys.lock_next(conversation_id)

    # --------------------------------------------------------------- tickets

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """A new ticket, behind every live one, valid for ``lock_lifetime`` seconds."""
        try:
            return int(self._issue(keys=[self._queue(conversation_id), self._next(conversation_id)],
                                   args=[max(1, int(lock_lifetime * 1000))]))
        except redis.RedisError as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def tickets_ahead(self, conversation_id: Text, ticket: int) -> int:
        """0 when ``ticket`` is served, else how many live tickets come first; -1 if it expired."""
        return int(self._position(keys=[self._queue(conversation_id)], args=[ticket]))

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        """Drop the ticket; the conversation's keys go with the last one."""
        self._finish(keys=[self._queue(conversation_id), self._next(conversation_id)], args=[ticket_number])

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Finish serving ``ticket_number`` (the keys are deleted when no one waits)."""
        self.finish_serving(conversation_id, ticket_number)

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: Text,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncGenerator[TicketLock, None]:
        """Hold the conversation's lock: wait for this ticket's turn, release it afterwards."""
        ticket = self.issue_ticket(conversation_id, lock_lifetime)
        try:
            yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            self.cleanup(conversation_id, ticket)

    async def _acquire_lock(self, conversation_id: Text, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        pause = FIRST_POLL_SECONDS
        ceiling = max(FIRST_POLL_SECONDS, float(wait_time_in_seconds))
        while True:
            ahead = self.tickets_ahead(conversation_id, ticket)
            if ahead == 0:
                return self.get_lock(conversation_id) or TicketLock(conversation_id)
            if ahead < 0:
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
            logger.debug("Lock for %s: %d turn(s) ahead; retrying in %.3f s", conversation_id, ahead, pause)
            await asyncio.sleep(pause)
            pause = min(ceiling, pause * 2)

    # ------------------------------------------- Rasa's lock-object interface

    def get_lock(self, conversation_id: Text) -> Optional[TicketLock]:
        """The live tickets as Rasa's ``TicketLock`` (expiries in this machine's epoch seconds)."""
        raw = [item.decode() if isinstance(item, bytes) else item
               for item in self._snapshot(keys=[self._queue(conversation_id)])]
        redis_now_ms = float(raw.pop())
        if not raw:
            return None
        offset = time.time() - redis_now_ms / 1000
        tickets = deque()
        for member in raw:
            number, expiry = member.split(":")
            tickets.append(Ticket(int(number), float(expiry) / 1000 + offset))
        return TicketLock(conversation_id, tickets)

    def is_someone_waiting(self, conversation_id: Text) -> bool:
        """Whether any live ticket remains."""
        lock = self.get_lock(conversation_id)
        return bool(lock and lock.is_someone_waiting())

    def update_lock(self, conversation_id: Text) -> None:
        """Expired tickets are dropped by every script; nothing else to do."""
        self._snapshot(keys=[self._queue(conversation_id)])

    def delete_lock(self, conversation_id: Text) -> None:
        """Forget every ticket of the conversation."""
        deleted = self.red.delete(self._queue(conversation_id), self._next(conversation_id))
        self._log_deletion(conversation_id, bool(deleted))

    def save_lock(self, lock: TicketLock) -> None:
        """Not used: tickets change only through the scripts (kept for the interface)."""
        raise NotImplementedError("RedisTicketLockStore changes tickets only atomically; use issue_ticket")


class RedisUrlLockStore(RedisLockStore):
    """Rasa's own ``RedisLockStore`` (not atomic across processes), connected from a URL."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        url: Optional[Text] = None,
        key_prefix: Optional[Text] = None,
        socket_timeout: Optional[float] = None,
        **_: Any,
    ) -> None:
        """Connect to ``url``, the endpoint's ``url``, ``REDIS_URL`` or the embedded server."""
        kwargs = dict(endpoint_config.kwargs) if endpoint_config else {}
        url = url or (endpoint_config.url if endpoint_config else None) or redis_client.redis_url()
        key_prefix = key_prefix or kwargs.get("key_prefix") or settings.get().key_prefix
        socket_timeout = float(
            socket_timeout or kwargs.get("socket_timeout") or DEFAULT_SOCKET_TIMEOUT_IN_SECONDS
        )
        # The parent's client is never connected (redis-py connects lazily);
        # it is replaced right away by one built from the URL.
        super().__init__(key_prefix=key_prefix, socket_timeout=socket_timeout)
        self.red = redis.Redis.from_url(url, socket_timeout=socket_timeout)
