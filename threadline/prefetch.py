"""Speculative prefetch: look the customer up while the phone is still ringing.

A voice connector knows who is calling (the caller id) before the caller has
said anything. It starts ``Prefetcher.start`` at the incoming-call webhook; the
lookups below run in the background while the greeting is produced, and their
results land in Redis under one key per customer::

    {p}:prefetch:{customer id}  ->  {"at": <epoch>, "kinds": {kind: value, ...}}

written with **one** ``SET ... EX ttl`` once every lookup has finished, so a
reader sees all of a prefetch or none of it. A prefetch cancelled part-way
(the call ended, the server stops) or one that overruns its time budget writes
nothing. Anyone may read it, in any process (the action server included)::

    from threadline.prefetch import get_cached
    cases = get_cached(customer_id, "open_cases")   # None when not prefetched

Values are hints with a short TTL (``PREFETCH_TTL_SECONDS``, default 120 s):
a reader that needs the truth at this instant still queries the source.

Kinds filled by :func:`default_loaders`:

``profile``      ``{"channels": [...], "last_channel": ...}`` (no addresses)
``open_cases``   the customer's handoff requests that are not closed
``conversation`` ``{"active_loop", "requested_slot", "latest_intent", "events"}``
                 from the agent's tracker store
"""
import asyncio
import inspect
import json
import logging
import time
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Union

from threadline import identity, settings
from threadline.keys import Keys

logger = logging.getLogger(__name__)

DEFAULT_TTL = 120
DEFAULT_TIMEOUT = 3.0
KINDS = ("profile", "open_cases", "conversation")

Loader = Callable[[], Union[Any, Awaitable[Any]]]


def cache_key(customer_id: str) -> str:
    """``{THREADLINE_KEY_PREFIX}:prefetch:{customer id}``."""
    return Keys().prefetch(customer_id)


def ttl_seconds() -> int:
    """How long a prefetch stays usable (``PREFETCH_TTL_SECONDS``)."""
    return settings.get().integer("PREFETCH_TTL_SECONDS")


def _redis(redis: Any) -> Any:
    if redis is not None:
        return redis
    from threadline.redis_client import get_client

    return get_client()


def get_cached(customer_id: str, kind: str, redis: Any = None) -> Optional[Any]:
    """The prefetched ``kind`` for ``customer_id``, or None when there is none (blocking)."""
    raw = _redis(redis).get(cache_key(customer_id))
    if not raw:
        return None
    try:
        return json.loads(raw).get("kinds", {}).get(kind)
    except (ValueError, AttributeError):
        return None


async def _call(loader: Loader) -> Any:
    if inspect.iscoroutinefunction(loader):
        return await loader()
    result = await asyncio.to_thread(loader)
    if inspect.isawaitable(result):
        result = await result
    return result


async def prefetch(
    customer_id: str,
    loaders: Mapping[str, Loader],
    *,
    ttl: Optional[int] = None,
    timeout: float = DEFAULT_TIMEOUT,
    redis: Any = None,
) -> Dict[str, Any]:
    """Run ``loaders`` concurrently, then cache what they found in one SET.

    A loader that fails is left out (and logged); when all fail nothing is
    written. Cancellation or the ``timeout`` stops everything before the
    write. Returns the values written.
    """
    kinds = list(loaders)

    async def run_all() -> list:
        return await asyncio.gather(*(_call(loaders[k]) for k in kinds), return_exceptions=True)

    results = await asyncio.wait_for(run_all(), timeout)
    found: Dict[str, Any] = {}
    for kind, result in zip(kinds, results):
        if isinstance(result, BaseException):
            logger.warning("prefetch %s for %s failed: %r", kind, customer_id, result)
        else:
            found[kind] = result
    if found:
        document = json.dumps({"at": time.time(), "kinds": found}, default=str)
        client = _redis(redis)
        await asyncio.to_thread(client.set, cache_key(customer_id), document, ex=ttl or ttl_seconds())
    return found


def _profile(customer_id: str, redis: Any) -> Dict[str, Any]:
    addresses = identity.addresses(customer_id, redis)
    return {"channels": sorted(addresses), "last_channel": identity.last_channel(customer_id, redis)}


def _open_cases(customer_id: str) -> list:
    from threadline.db import cases

    return [
        {"id": case["id"], "reason": case["reason"], "status": case["status"]}
        for case in cases.handoff_requests(customer_id)
        if case.get("status") != "closed"
    ]


async def _conversation(customer_id: str, tracker_store: Any) -> Optional[Dict[str, Any]]:
    tracker = await tracker_store.retrieve(customer_id)
    if tracker is None:
        return None
    latest = tracker.latest_message
    return {
        "active_loop": (tracker.active_loop or {}).get("name"),
        "requested_slot": tracker.get_slot("requested_slot"),
        "latest_intent": (latest.intent or {}).get("name") if latest else None,
        "events": len(tracker.events),
    }


def default_loaders(customer_id: str, tracker_store: Any = None, redis: Any = None) -> Dict[str, Loader]:
    """The standard lookups for one customer (``conversation`` only with a tracker store)."""
    loaders: Dict[str, Loader] = {
        "profile": lambda: _profile(customer_id, _redis(redis)),
        "open_cases": lambda: _open_cases(customer_id),
    }
    if tracker_store is not None:

        async def conversation() -> Optional[Dict[str, Any]]:
            return await _conversation(customer_id, tracker_store)

        loaders["conversation"] = conversation
    return loaders


class Prefetcher:
    """The prefetches running in this process, one per call, cancellable by call id."""

    def __init__(self) -> None:
        self._tasks: Dict[str, asyncio.Task] = {}

    def start(
        self,
        call_key: str,
        customer_id: str,
        loaders: Mapping[str, Loader],
        *,
        ttl: Optional[int] = None,
        timeout: float = DEFAULT_TIMEOUT,
        redis: Any = None,
    ) -> asyncio.Task:
        """Start prefetching for ``customer_id`` in the background (needs a running loop)."""
        self.cancel(call_key)
        task = asyncio.ensure_future(
            prefetch(customer_id, loaders, ttl=ttl, timeout=timeout, redis=redis)
        )
        self._tasks[call_key] = task
        task.add_done_callback(lambda done: self._finished(call_key, done))
        return task

    def _finished(self, call_key: str, task: asyncio.Task) -> None:
        if self._tasks.get(call_key) is task:
            del self._tasks[call_key]
        if task.cancelled():
            logger.debug("prefetch for call %s cancelled; nothing cached", call_key)
        elif task.exception() is not None:
            logger.warning("prefetch for call %s gave up: %r", call_key, task.exception())

    def cancel(self, call_key: str) -> bool:
        """Cancel the call's prefetch if it is still running; True if one was."""
        task = self._tasks.pop(call_key, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def running(self, call_key: str) -> bool:
        """Whether the call's prefetch is still running."""
        task = self._tasks.get(call_key)
        return task is not None and not task.done()
