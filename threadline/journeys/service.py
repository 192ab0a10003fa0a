"""Starting, ending and answering journeys: what triggers, operators and the connector pipeline call.

* ``start`` (an operator, for one customer; ``start_many`` for a list) and
  ``emit`` (an event the system emits: ``appointment_booked``,
  ``case_closed``, ``order_shipped``, ``service_due``) create instances whose
  first step is due after its wait.
* ``customer_wrote`` is called by the connector pipeline for every message a
  customer sends, on any channel: a cheap Redis check first (is any journey
  waiting for this customer?), and only then the database, so a customer
  without journeys costs one ``EXISTS``.
* ``cancel`` ends an instance for an operator.

Everything here is blocking (database, Redis): async callers use a thread.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, Iterable, List, Optional

from threadline import settings as settings_module
from threadline.journeys import definitions, rules, store
from threadline.keys import Keys

logger = logging.getLogger(__name__)

WAITING_TTL_SECONDS = 30 * 86400


class JourneyRefused(ValueError):
    """A journey cannot start as asked (unknown journey, missing context, bad customer); says why."""


_cache: Dict[str, Any] = {}


def journeys() -> Dict[str, definitions.Journey]:
    """The definitions, loaded once per process and per ``JOURNEYS_DIR``."""
    directory = str(definitions.journeys_dir())
    if _cache.get("dir") != directory:
        _cache["journeys"] = definitions.load_all()
        _cache["dir"] = directory
    return _cache["journeys"]


def forget_definitions() -> None:
    """Read the definitions again on next use (tests switch ``JOURNEYS_DIR``)."""
    _cache.clear()


def _redis(redis: Any) -> Any:
    from threadline import redis_client

    return redis if redis is not None else redis_client.get_client()


def _clean_context(journey: definitions.Journey, context: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    context = dict(context or {})
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise JourneyRefused(f"context {key!r}: values must be plain text or numbers")
    missing = [name for name in journey.required if str(context.get(name, "")).strip() == ""]
    if missing:
        raise JourneyRefused(f"journey {journey.name} needs {', '.join(missing)} in its context")
    if "timezone" in context and rules.zone(str(context["timezone"])) is None:
        raise JourneyRefused(f"timezone {context['timezone']!r} is not an IANA time zone (e.g. Europe/Berlin)")
    return {k: str(v) if not isinstance(v, bool) else v for k, v in context.items()}


def start(name: str, customer_ref: str, context: Optional[Dict[str, Any]] = None, trigger: str = "operator",
          started_by: Optional[str] = None, dedupe_key: Optional[str] = None, redis: Any = None) -> Optional[int]:
    """Start journey ``name`` for a customer; the instance id (None: this event already started it)."""
    journey = journeys().get(name)
    if journey is None:
        known = ", ".join(sorted(journeys())) or "none"
        raise JourneyRefused(f"there is no journey {name!r} (defined: {known})")
    if not customer_ref or not isinstance(customer_ref, str) or len(customer_ref) > 64:
        raise JourneyRefused("a journey needs a customer id")
    context = _clean_context(journey, context)
    first = journey.steps[0]
    due = store.now() + rules.scaled(first.wait)
    instance = store.start(journey.name, customer_ref, first.name, due, context, trigger, started_by,
                           dedupe_key, journey.cancel_on_reply)
    if instance is not None:
        _redis(redis).set(Keys().journeys_waiting(customer_ref), "1", ex=WAITING_TTL_SECONDS)
        logger.info("journey %s #%s started for %s (%s)", journey.name, instance, customer_ref, trigger)
    return instance


def start_many(name: str, customer_refs: Iterable[str], context: Optional[Dict[str, Any]] = None,
               started_by: Optional[str] = None, redis: Any = None) -> Dict[str, Any]:
    """Start a journey for a list of customers; per customer, the instance id or why it was refused."""
    results: Dict[str, Any] = {}
    for customer in customer_refs:
        customer = customer.strip()
        if not customer:
            continue
        try:
            results[customer] = start(name, customer, context, "operator", started_by, redis=redis)
        except JourneyRefused as refused:
            results[customer] = f"refused: {refused}"
    return results


def emit(event: str, customer_ref: str, context: Optional[Dict[str, Any]] = None,
         occurrence: Optional[str] = None, redis: Any = None) -> List[int]:
    """An event happened to a customer: start every journey it triggers (once per ``occurrence``)."""
    if event not in definitions.EVENTS:
        raise JourneyRefused(f"unknown event {event!r} (known: {', '.join(definitions.EVENTS)})")
    started = []
    for journey in definitions.triggered_by(journeys().values(), event):
        key = f"{journey.name}:{event}:{occurrence}" if occurrence else None
        try:
            instance = start(journey.name, customer_ref, context, event, None, key, redis)
        except JourneyRefused as refused:
            logger.warning("event %s did not start journey %s: %s", event, journey.name, refused)
            continue
        if instance is not None:
            started.append(instance)
    return started


def emit_safely(event: str, customer_ref: str, context: Optional[Dict[str, Any]] = None,
                occurrence: Optional[str] = None) -> List[int]:
    """``emit`` for callers whose own work must not fail because of a journey (booking, closing a case)."""
    try:
        return emit(event, customer_ref, context, occurrence)
    except Exception:
        logger.exception("event %s for %s could not start its journeys", event, customer_ref)
        return []


def customer_wrote(customer_ref: str, redis: Any = None, waiting: Optional[bool] = None) -> List[int]:
    """A customer message arrived: end the waits it ends; returns the instances it ended.

    ``waiting``: whether the caller already read ``Keys.journeys_waiting``
    (it exists only while the customer has a journey waiting for a reply).
    """
    r = _redis(redis)
    key = Keys().journeys_waiting(customer_ref)
    if waiting is None:
        waiting = bool(r.exists(key))
    if not waiting:
        return []
    ended = store.customer_replied(customer_ref)
    if not store.has_active(customer_ref):
        r.delete(key)
    if ended:
        logger.info("journeys %s of %s ended: the customer replied", ended, customer_ref)
    return ended


def cancel(instance_id: int, by: str) -> bool:
    """An operator ends an instance; False if it was not active."""
    return store.end(instance_id, store.CANCELLED, f"cancelled by {by}"[:64])


def next_of(journey_name: str, index: int, at: Optional[dt.datetime] = None) -> Optional[tuple]:
    """(name, due time) of the step after ``index``, or None at the end (or for a journey gone from disk)."""
    journey = journeys().get(journey_name)
    following = journey.step(index + 1) if journey else None
    if following is None:
        return None
    return following.name, (at or store.now()) + rules.scaled(following.wait)


def worker_enabled() -> bool:
    """Whether this process runs a journey worker (``JOURNEY_WORKER``)."""
    return settings_module.get().flag("JOURNEY_WORKER")
