"""The journey worker: claims due steps, applies the rules, sends through the one outbound path.

One worker runs inside each rasa server (``JOURNEY_WORKER``), because that is
where the output channels, the tracker store and the socket.io server live:
a journey message is a message the bot sends on its own, through the same
consent checks, renderers and failure records as an agent's. On PostgreSQL
every replica's worker claims steps (``FOR UPDATE SKIP LOCKED``); on SQLite
only the worker holding a Redis lease runs.

Per due step (``process``)::

    instance still active? journey still defined?
    -> unless: a condition met (the customer replied, the appointment is booked) ends the journey
    -> an opt-out on any channel since the journey started ends it
    -> channel: the first of the step's preferences that can reach the customer with consent
    -> quiet hours in the customer's local time, then the frequency cap: moved, not dropped
    -> send-log row written (unique per step: never twice), then the provider is called
    -> sent: the next step is queued in the same transaction that closes this one

The sending itself (rendering a domain response into the customer's
conversation, placing a call) is the ``Deliverer``'s, which the rasa server
provides (``connectors.journeys``).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol

from threadline import metrics
from threadline import settings as settings_module
from threadline.journeys import definitions, rules, service, store
from threadline.keys import Keys
from threadline.leases import Lease

logger = logging.getLogger(__name__)

RECOVER_EVERY_SECONDS = 5.0
DEPTH_EVERY_SECONDS = 5.0  # how often each worker recounts the queue for the metrics
MAX_SEND_ATTEMPTS = 3
MAX_THROTTLED_ATTEMPTS = 10  # a platform that keeps asking us to wait gets more patience, not forever
RETRY_SECONDS = 60.0


@dataclass
class SendOutcome:
    """How one send went: ``sent``, ``suppressed`` (consent, window; nothing went out) or ``failed``."""

    state: str
    detail: Optional[str] = None
    status: Optional[int] = None
    retry_after: Optional[float] = None
    provider_ref: Optional[str] = None


class Deliverer(Protocol):
    """What the worker needs from the process that can reach customers."""

    def reachable(self, customer_ref: str, channel: str) -> bool:
        """Whether the customer has an address on ``channel`` and the channel can send on its own (blocking)."""

    def phone_of(self, customer_ref: str) -> Optional[str]:
        """The customer's E.164 phone number from the identity index, if any (blocking)."""

    async def send_message(self, claim: store.ClaimedStep, journey: definitions.Journey,
                           step: definitions.Step, channel: str) -> SendOutcome:
        """Render ``step.response`` into the conversation and send it on ``channel``."""

    async def place_call(self, claim: store.ClaimedStep, journey: definitions.Journey,
                         step: definitions.Step, channel: str, number: str) -> SendOutcome:
        """Record the call's opening line in the conversation and have ``channel`` phone ``number``."""


def _condition_met(condition: str, claim: store.ClaimedStep) -> bool:
    if condition == "replied":
        return claim.last_reply_at is not None and claim.last_reply_at >= claim.started_at
    if condition == "appointment_booked":
        from sqlalchemy import select

        from threadline.db.models import Appointment
        from threadline.db.session import session_scope

        with session_scope() as session:
            return session.scalars(select(Appointment.id).where(
                Appointment.customer_ref == claim.customer_ref, Appointment.status == "booked",
                Appointment.created_at >= claim.started_at.replace(microsecond=0)).limit(1)).first() is not None
    return False


def _blocking_checks(claim: store.ClaimedStep, step: definitions.Step) -> Optional[str]:
    """Why the journey ends before this step (a condition met, an opt-out), or None."""
    for condition in step.unless:
        if _condition_met(condition, claim):
            return condition
    from threadline.db import consent as ledger

    revoked = ledger.revoked_since(claim.customer_ref, claim.started_at.replace(microsecond=0))
    if revoked:
        return f"opted_out ({', '.join(revoked)})"
    return None


def _consent_allows(customer_ref: str, channel: str, purpose: str, redis: Any) -> bool:
    from threadline import consent

    # The window is the output channel's to check at send time (a WhatsApp template goes outside it).
    return consent.check(customer_ref, channel, purpose, None, redis).allowed


class JourneyWorker:
    """Runs due journey steps until stopped."""

    def __init__(self, deliverer: Deliverer, name: Optional[str] = None, redis: Any = None) -> None:
        self.deliverer = deliverer
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._redis = redis
        config = settings_module.get()
        self.poll = max(0.05, config.number("JOURNEY_POLL_SECONDS"))
        self.batch = max(1, config.integer("JOURNEY_BATCH"))
        self.lease = dt.timedelta(seconds=max(5, config.integer("JOURNEY_LEASE_SECONDS")))
        self.stats: Dict[str, int] = defaultdict(int)
        self._last_recover = 0.0
        self._sqlite_lease = Lease(lambda: Keys().journeys_worker_lease(), self.lease.total_seconds() * 1000 / 4,
                                   owner=self.name, redis=redis)
        self._last_depth: Optional[float] = None

    # ---------------------------------------------------------------- the loop

    def redis(self) -> Any:
        """The Redis client."""
        from threadline import redis_client

        return self._redis if self._redis is not None else redis_client.get_client()

    def _may_run(self) -> bool:
        from threadline.db.session import get_engine

        return get_engine().dialect.name == "postgresql" or self._sqlite_lease.hold()

    async def run_once(self) -> int:
        """Recover stopped workers' steps now and then, claim a batch and process it; the number processed."""
        await self._refresh_depth()
        if not await asyncio.to_thread(self._may_run):
            return 0
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_recover >= RECOVER_EVERY_SECONDS:
            self._last_recover = loop.time()
            await asyncio.to_thread(store.recover_expired, service.next_of)
        claims = await asyncio.to_thread(store.claim_due, self.name, self.batch, self.lease)
        if not claims:
            return 0
        by_customer: Dict[str, List[store.ClaimedStep]] = defaultdict(list)
        for claim in claims:
            by_customer[claim.customer_ref].append(claim)
        # One customer's steps in order (the cap counts each send); customers side by side.
        await asyncio.gather(*(self._process_all(steps) for steps in by_customer.values()))
        return len(claims)

    async def _refresh_depth(self) -> None:
        """Recount the queue for ``threadline_journey_queue_depth`` now and then (never fails the pass).

        Every worker does, the one holding the lease or not, so each live
        process reports a fresh count of the same table (the gauge is "livemax").
        """
        now = asyncio.get_running_loop().time()
        if self._last_depth is not None and now - self._last_depth < DEPTH_EVERY_SECONDS:
            return
        self._last_depth = now
        try:
            metrics.set_queue_depth(await asyncio.to_thread(store.queue_depth))
        except Exception:
            logger.warning("journey worker %s: could not count the queue for the metrics", self.name, exc_info=True)

    async def _process_all(self, claims: List[store.ClaimedStep]) -> None:
        for claim in claims:
            try:
                await self.process(claim)
            except Exception:
                # The lease runs out and another pass recovers the step; nothing is lost.
                logger.exception("journey step %s (%s #%s) failed", claim.step_name, claim.journey, claim.instance_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; database or Redis outages only slow it down."""
        logger.info("journey worker %s started", self.name)
        backoff = self.poll
        while not stop.is_set():
            try:
                done = await self.run_once()
                backoff = self.poll
            except Exception:
                logger.exception("journey worker %s: a pass failed; retrying", self.name)
                done, backoff = 0, min(backoff * 2, 10.0)
            if done:
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
        logger.info("journey worker %s stopped", self.name)

    # ------------------------------------------------------------- one step

    async def process(self, claim: store.ClaimedStep) -> str:
        """Run one claimed step; returns what happened (for logs, tests and stats)."""
        outcome = await self._process(claim)
        self.stats[outcome] += 1
        return outcome

    async def _process(self, claim: store.ClaimedStep) -> str:
        journey = service.journeys().get(claim.journey)
        step = journey.step(claim.step_index) if journey else None
        if journey is None or step is None:
            await asyncio.to_thread(store.finish_step, claim.step_id, "failed", "the journey is no longer defined",
                                    None, None, store.CANCELLED, "journey removed")
            return "failed"
        if claim.status != store.ACTIVE:
            await asyncio.to_thread(store.finish_step, claim.step_id, "cancelled", f"journey {claim.status}")
            return "cancelled"
        ended = await asyncio.to_thread(_blocking_checks, claim, step)
        if ended is not None:
            status = store.CANCELLED if ended.startswith("opted_out") else store.COMPLETED
            await asyncio.to_thread(store.finish_step, claim.step_id, "skipped", ended, None, None, status, ended[:64])
            return "ended"
        phone = await asyncio.to_thread(self.deliverer.phone_of, claim.customer_ref)
        channel = await asyncio.to_thread(self._choose_channel, claim, journey, step, phone)
        if channel is None or channel.startswith("!"):
            outcome = "suppressed" if channel else "no_channel"
            detail = ("consent forbids every channel of the step" if channel
                      else "the customer has no address on the step's channels")
            await self._finish(claim, outcome, detail)
            return outcome
        moved = await asyncio.to_thread(self._hold_back, claim, journey, channel, phone)
        if moved is not None:
            return moved
        first = await asyncio.to_thread(store.begin_send, claim.instance_id, claim.step_index,
                                        claim.customer_ref, channel, self.name)
        if not first:
            await self._finish(claim, "already_sent", "the send log already has this step")
            return "already_sent"
        if step.is_call:
            result = await self.deliverer.place_call(claim, journey, step, channel, phone or "")
        else:
            result = await self.deliverer.send_message(claim, journey, step, channel)
        return await self._after_send(claim, step, channel, result)

    def _choose_channel(self, claim: store.ClaimedStep, journey: definitions.Journey,
                        step: definitions.Step, phone: Optional[str]) -> Optional[str]:
        """The first channel that reaches the customer with consent; ``"!"``-prefixed if only consent stopped it."""
        blocked = None
        for channel in step.call or step.channels:
            if step.is_call:
                if not phone or not self.deliverer.reachable(claim.customer_ref, channel):
                    continue
            elif not self.deliverer.reachable(claim.customer_ref, channel):
                continue
            if _consent_allows(claim.customer_ref, channel, journey.purpose, self.redis()):
                return channel
            blocked = f"!{channel}"
        return blocked

    def _hold_back(self, claim: store.ClaimedStep, journey: definitions.Journey, channel: str,
                   phone: Optional[str]) -> Optional[str]:
        """Move the step out of quiet hours or under the frequency cap (blocking); None if it may go now."""
        at = store.now()
        quiet = journey.quiet_hours if journey.quiet_hours is not None else rules.default_quiet_hours()
        quiet = quiet or None  # () is a journey without quiet hours
        tz = rules.customer_zone(claim.context.get("timezone"), phone)
        allowed = rules.next_allowed(at, tz, quiet)
        if allowed > at:
            store.reschedule(claim.step_id, allowed, f"quiet hours in {tz.key}; moved to {allowed.isoformat()}Z")
            return "quiet_hours"
        cap = rules.frequency_cap()
        if cap is not None:
            limit, window = cap
            recent = store.sends_since(claim.customer_ref, at - window)
            if len(recent) >= limit:
                until = recent[len(recent) - limit] + window + dt.timedelta(seconds=1)
                store.reschedule(claim.step_id, until, f"frequency cap {limit} per {window}; moved")
                return "capped"
        return None

    async def _finish(self, claim: store.ClaimedStep, outcome: str, detail: Optional[str]) -> None:
        following = service.next_of(claim.journey, claim.step_index)
        await asyncio.to_thread(store.finish_step, claim.step_id, outcome, detail, *(following or (None, None)))

    async def _after_send(self, claim: store.ClaimedStep, step: definitions.Step, channel: str,
                          result: SendOutcome) -> str:
        outcome = await self._record_send(claim, step, channel, result)
        metrics.count_journey_send(channel, outcome)
        return outcome

    async def _record_send(self, claim: store.ClaimedStep, step: definitions.Step, channel: str,
                           result: SendOutcome) -> str:
        if result.state == "sent":
            await asyncio.to_thread(store.finish_send, claim.instance_id, claim.step_index, store.SENT,
                                    result.provider_ref, result.status)
            await self._finish(claim, "sent", f"sent on {channel}")
            return "sent"
        if result.state == "suppressed":
            await asyncio.to_thread(store.finish_send, claim.instance_id, claim.step_index, "suppressed",
                                    None, None, result.detail)
            await self._finish(claim, "suppressed", result.detail)
            return "suppressed"
        # Failed: nothing went out, so the row may be taken again.
        await asyncio.to_thread(store.finish_send, claim.instance_id, claim.step_index, store.FAILED,
                                None, result.status, result.detail)
        failures = claim.attempts + 1  # failed sends of this step, this one included
        limit = MAX_THROTTLED_ATTEMPTS if result.retry_after is not None else MAX_SEND_ATTEMPTS
        if failures < limit:
            wait = result.retry_after if result.retry_after is not None else RETRY_SECONDS * failures
            due = store.now() + dt.timedelta(seconds=wait)
            await asyncio.to_thread(store.reschedule, claim.step_id, due,
                                    f"{channel} failed ({result.detail}); retry at {due.isoformat()}Z", True)
            return "retry"
        await self._finish(claim, "failed", result.detail)
        return "failed"
