"""Journey instances, their due steps and the send log, in the business database.

Every change is one short transaction, so a worker can die at any point and
another picks up from what is committed:

* ``claim_due`` takes due steps with ``SELECT ... FOR UPDATE SKIP LOCKED`` on
  PostgreSQL (two workers never wait on or take the same row) and marks them
  claimed with a lease; on SQLite (one writer at a time, no row locks) the
  conditional ``UPDATE ... WHERE state = 'pending'`` is what keeps a second
  worker off a step.
* ``begin_send`` writes the step's send-log row *before* the provider is
  called; the row is unique per (instance, step), so a second worker, or the
  same step run again after a crash, never sends twice.
* ``recover_expired`` returns steps whose worker died: with no send-log row
  the step simply runs again; with a row still ``sending`` nobody knows
  whether the provider got the request, so it is marked ``in_doubt`` and never
  re-sent (a customer is better missing one reminder than getting two).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from threadline.db.models import JourneyInstance, JourneySend, JourneyStep, utcnow
from threadline.db.session import get_engine, session_scope

logger = logging.getLogger(__name__)

ACTIVE = "active"
COMPLETED = "completed"
CANCELLED = "cancelled"
REPLIED = "replied"

PENDING = "pending"
CLAIMED = "claimed"
DONE = "done"
STEP_CANCELLED = "cancelled"

SENDING = "sending"
SENT = "sent"
FAILED = "failed"
IN_DOUBT = "in_doubt"


def now() -> dt.datetime:
    """Naive UTC with microseconds (due times are finer than the models' default)."""
    return dt.datetime.utcnow()


@dataclass(frozen=True)
class ClaimedStep:
    """A due step a worker holds, with what it needs from its instance."""

    step_id: int
    instance_id: int
    journey: str
    customer_ref: str
    step_index: int
    step_name: str
    due_at: dt.datetime
    context: Dict[str, Any]
    started_at: dt.datetime
    last_reply_at: Optional[dt.datetime]
    status: str
    attempts: int  # failed sends of this step so far


def _is_postgres() -> bool:
    return get_engine().dialect.name == "postgresql"


def start(journey: str, customer_ref: str, first_step: str, first_due: dt.datetime,
          context: Optional[Dict[str, Any]] = None, trigger: str = "operator",
          started_by: Optional[str] = None, dedupe_key: Optional[str] = None,
          ends_on_reply: bool = True) -> Optional[int]:
    """Create an instance and its first step; None when ``dedupe_key`` already started one."""
    try:
        with session_scope() as session:
            instance = JourneyInstance(
                journey=journey, customer_ref=customer_ref, status=ACTIVE, context=dict(context or {}),
                trigger=trigger, started_by=started_by, dedupe_key=dedupe_key, ends_on_reply=ends_on_reply,
                started_at=now(),
            )
            session.add(instance)
            session.flush()
            session.add(JourneyStep(instance_id=instance.id, customer_ref=customer_ref, step_index=0,
                                    step_name=first_step, due_at=first_due, state=PENDING))
            return instance.id
    except IntegrityError:
        if dedupe_key is None:
            raise
        return None


def claim_due(worker: str, limit: int, lease: dt.timedelta, at: Optional[dt.datetime] = None) -> List[ClaimedStep]:
    """Claim up to ``limit`` due steps of active instances for ``worker`` (oldest due first)."""
    at = at or now()
    claimed: List[ClaimedStep] = []
    with session_scope() as session:
        query = (
            select(JourneyStep.id)
            .where(JourneyStep.state == PENDING, JourneyStep.due_at <= at)
            .order_by(JourneyStep.due_at)
            .limit(limit)
        )
        if _is_postgres():
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        for step_id in ids:
            result = session.execute(
                update(JourneyStep)
                .where(JourneyStep.id == step_id, JourneyStep.state == PENDING)
                .values(state=CLAIMED, claimed_by=worker, lease_until=at + lease, updated_at=utcnow())
            )
            if result.rowcount != 1:
                continue  # another worker took it (SQLite)
            row = session.execute(
                select(JourneyStep, JourneyInstance)
                .join(JourneyInstance, JourneyInstance.id == JourneyStep.instance_id)
                .where(JourneyStep.id == step_id)
            ).one()
            step, instance = row
            claimed.append(ClaimedStep(
                step.id, instance.id, instance.journey, instance.customer_ref, step.step_index, step.step_name,
                step.due_at, dict(instance.context or {}), instance.started_at, instance.last_reply_at,
                instance.status, step.attempts,
            ))
    return claimed


# (journey, finished step index) -> (next step name, its due time), or None at the end.
NextStep = Callable[[str, int], Optional[Tuple[str, dt.datetime]]]


def recover_expired(next_of: NextStep, at: Optional[dt.datetime] = None) -> Dict[str, int]:
    """Steps whose worker's lease ran out: run again, or ``in_doubt`` (and the journey moves on) if their send had begun."""
    at = at or now()
    counts = {"requeued": 0, "in_doubt": 0}
    with session_scope() as session:
        # No row lock: each step below moves on only through a conditional update, which one worker wins.
        stale = session.scalars(
            select(JourneyStep).where(JourneyStep.state == CLAIMED, JourneyStep.lease_until < at)).all()
    for step in stale:
        with session_scope() as session:
            # Conditional, so of two workers recovering the same step only one moves it on.
            in_doubt = session.execute(update(JourneySend).where(
                JourneySend.instance_id == step.instance_id, JourneySend.step_index == step.step_index,
                JourneySend.state == SENDING,
            ).values(state=IN_DOUBT, finished_at=utcnow())).rowcount == 1
        if in_doubt:
            journey = instance_journey(step.instance_id)
            following = next_of(journey, step.step_index) if journey else None
            finish_step(step.id, IN_DOUBT, f"worker {step.claimed_by} stopped while sending; not sent again",
                        *(following or (None, None)))
            counts["in_doubt"] += 1
        else:
            with session_scope() as session:
                session.execute(update(JourneyStep).where(
                    JourneyStep.id == step.id, JourneyStep.state == CLAIMED, JourneyStep.lease_until < at
                ).values(state=PENDING, claimed_by=None, lease_until=None, updated_at=utcnow()))
            counts["requeued"] += 1
    if any(counts.values()):
        logger.warning("journeys: recovered steps of stopped workers: %s", counts)
    return counts


def instance_journey(instance_id: int) -> Optional[str]:
    """The journey name of an instance."""
    with session_scope() as session:
        return session.scalars(select(JourneyInstance.journey).where(JourneyInstance.id == instance_id)).first()


def reschedule(step_id: int, due_at: dt.datetime, detail: str, failed: bool = False) -> None:
    """Put a claimed step back, due at ``due_at`` (quiet hours, the cap; ``failed``: a send failed, counted)."""
    values = dict(state=PENDING, due_at=due_at, claimed_by=None, lease_until=None, detail=detail[:255],
                  updated_at=utcnow())
    if failed:
        values["attempts"] = JourneyStep.attempts + 1
    with session_scope() as session:
        session.execute(update(JourneyStep).where(JourneyStep.id == step_id).values(**values))


def finish_step(step_id: int, outcome: str, detail: Optional[str] = None,
                next_step: Optional[str] = None, next_due: Optional[dt.datetime] = None,
                end_status: Optional[str] = None, end_reason: Optional[str] = None) -> None:
    """Mark a step done and, in the same transaction, queue the next one or end the journey."""
    with session_scope() as session:
        step = session.get(JourneyStep, step_id)
        if step is None:
            return
        step.state, step.outcome = DONE, outcome
        step.detail = (detail or None) and detail[:255]
        step.claimed_by, step.lease_until = None, None
        instance = session.get(JourneyInstance, step.instance_id)
        if instance is None or instance.status != ACTIVE:
            return
        if next_step is not None and end_status is None:
            exists = session.scalars(select(JourneyStep.id).where(
                JourneyStep.instance_id == instance.id, JourneyStep.step_index == step.step_index + 1)).first()
            if exists is None:
                session.add(JourneyStep(instance_id=instance.id, customer_ref=instance.customer_ref,
                                        step_index=step.step_index + 1, step_name=next_step,
                                        due_at=next_due or now(), state=PENDING))
            return
        instance.status = end_status or COMPLETED
        instance.ended_at = utcnow()
        instance.ended_reason = end_reason or ("every step ran" if instance.status == COMPLETED else None)


def begin_send(instance_id: int, step_index: int, customer_ref: str, channel: str, worker: str) -> bool:
    """Write the send-log row before calling the provider; False if this step was already sent (or is in doubt).

    A row left ``failed`` (the provider refused: nothing went out) is taken
    again for a retry.
    """
    try:
        with session_scope() as session:
            session.add(JourneySend(instance_id=instance_id, step_index=step_index, customer_ref=customer_ref,
                                    channel=channel, state=SENDING, worker=worker, created_at=now()))
        return True
    except IntegrityError:
        pass
    with session_scope() as session:
        result = session.execute(
            update(JourneySend)
            .where(JourneySend.instance_id == instance_id, JourneySend.step_index == step_index,
                   JourneySend.state == FAILED)
            .values(state=SENDING, channel=channel, worker=worker, error=None, status=None, finished_at=None,
                    created_at=now())
        )
        return result.rowcount == 1


def finish_send(instance_id: int, step_index: int, state: str, provider_ref: Optional[str] = None,
                status: Optional[int] = None, error: Optional[str] = None) -> None:
    """Record how the provider answered."""
    with session_scope() as session:
        session.execute(
            update(JourneySend)
            .where(JourneySend.instance_id == instance_id, JourneySend.step_index == step_index)
            .values(state=state, provider_ref=provider_ref, status=status, error=(error or None) and error[:255],
                    finished_at=utcnow())
        )


def sends_since(customer_ref: str, since: dt.datetime) -> List[dt.datetime]:
    """When the customer's journey sends (sent, sending or in doubt) since ``since`` happened, oldest first."""
    with session_scope() as session:
        return list(session.scalars(
            select(JourneySend.created_at)
            .where(JourneySend.customer_ref == customer_ref, JourneySend.created_at >= since,
                   JourneySend.state.in_((SENT, SENDING, IN_DOUBT)))
            .order_by(JourneySend.created_at)
        ))


def end(instance_id: int, status: str, reason: str) -> bool:
    """End an active instance and cancel its waiting steps; False if it was not active."""
    with session_scope() as session:
        result = session.execute(
            update(JourneyInstance)
            .where(JourneyInstance.id == instance_id, JourneyInstance.status == ACTIVE)
            .values(status=status, ended_at=utcnow(), ended_reason=reason[:64], updated_at=utcnow())
        )
        if result.rowcount != 1:
            return False
        session.execute(
            update(JourneyStep)
            .where(JourneyStep.instance_id == instance_id, JourneyStep.state == PENDING)
            .values(state=STEP_CANCELLED, outcome="cancelled", detail=reason[:255], updated_at=utcnow())
        )
        return True


def customer_replied(customer_ref: str, at: Optional[dt.datetime] = None) -> List[int]:
    """The customer wrote: note it on their active journeys and end those that end on a reply; returns those."""
    at = at or now()
    ended: List[int] = []
    with session_scope() as session:
        instances = session.scalars(select(JourneyInstance).where(
            JourneyInstance.customer_ref == customer_ref, JourneyInstance.status == ACTIVE)).all()
        for instance in instances:
            instance.last_reply_at = at
            if instance.ends_on_reply:
                instance.status, instance.ended_at, instance.ended_reason = REPLIED, utcnow(), "the customer replied"
                ended.append(instance.id)
        if ended:
            session.execute(
                update(JourneyStep)
                .where(JourneyStep.instance_id.in_(ended), JourneyStep.state == PENDING)
                .values(state=STEP_CANCELLED, outcome="cancelled", detail="the customer replied",
                        updated_at=utcnow())
            )
    return ended


def has_active(customer_ref: str) -> bool:
    """Whether the customer has an active journey."""
    with session_scope() as session:
        return session.scalars(select(JourneyInstance.id).where(
            JourneyInstance.customer_ref == customer_ref, JourneyInstance.status == ACTIVE).limit(1)).first() is not None


def instance_status(instance_id: int) -> Optional[str]:
    """The instance's status, or None if there is no such instance."""
    with session_scope() as session:
        return session.scalars(select(JourneyInstance.status).where(JourneyInstance.id == instance_id)).first()


def _instance_dict(instance: JourneyInstance, steps: List[JourneyStep], sends: List[JourneySend]) -> Dict[str, Any]:
    def iso(value: Optional[dt.datetime]) -> Optional[str]:
        return value.replace(microsecond=0).isoformat() + "Z" if value else None

    by_index = {s.step_index: s for s in sends}
    return {
        "id": instance.id, "journey": instance.journey, "customer": instance.customer_ref,
        "status": instance.status, "trigger": instance.trigger, "started_by": instance.started_by,
        "started_at": iso(instance.started_at), "ended_at": iso(instance.ended_at),
        "ended_reason": instance.ended_reason, "context": instance.context or {},
        "steps": [{
            "index": s.step_index, "name": s.step_name, "state": s.state, "outcome": s.outcome,
            "due_at": iso(s.due_at), "detail": s.detail,
            "send": ({"channel": by_index[s.step_index].channel, "state": by_index[s.step_index].state,
                      "at": iso(by_index[s.step_index].created_at)} if s.step_index in by_index else None),
        } for s in steps],
    }


def list_instances(customer_ref: Optional[str] = None, status: Optional[str] = None,
                   journey: Optional[str] = None, limit: int = 100) -> List[Dict[str, Any]]:
    """Instances, newest first, with their steps and sends."""
    with session_scope() as session:
        query = select(JourneyInstance).order_by(JourneyInstance.id.desc()).limit(limit)
        if customer_ref:
            query = query.where(JourneyInstance.customer_ref == customer_ref)
        if status:
            query = query.where(JourneyInstance.status == status)
        if journey:
            query = query.where(JourneyInstance.journey == journey)
        instances = session.scalars(query).all()
        ids = [i.id for i in instances]
        steps = session.scalars(select(JourneyStep).where(JourneyStep.instance_id.in_(ids))
                                .order_by(JourneyStep.step_index)).all() if ids else []
        sends = session.scalars(select(JourneySend).where(JourneySend.instance_id.in_(ids))).all() if ids else []
        return [_instance_dict(i, [s for s in steps if s.instance_id == i.id],
                               [s for s in sends if s.instance_id == i.id]) for i in instances]


def queue_depth(at: Optional[dt.datetime] = None) -> Dict[str, int]:
    """Steps waiting, due now, and claimed (for operators and metrics)."""
    at = at or now()
    with session_scope() as session:
        waiting = session.scalar(select(func.count()).select_from(JourneyStep).where(JourneyStep.state == PENDING))
        due = session.scalar(select(func.count()).select_from(JourneyStep).where(
            JourneyStep.state == PENDING, JourneyStep.due_at <= at))
        claimed = session.scalar(select(func.count()).select_from(JourneyStep).where(JourneyStep.state == CLAIMED))
    return {"waiting": waiting or 0, "due": due or 0, "claimed": claimed or 0}




def erase_customer(customer_ref: str) -> int:
    """Delete every journey of the customer with its steps and sends (erasure); returns the instances deleted."""
    from sqlalchemy import delete

    with session_scope() as session:
        ids = list(session.scalars(select(JourneyInstance.id).where(JourneyInstance.customer_ref == customer_ref)))
        if not ids:
            return 0
        session.execute(delete(JourneySend).where(JourneySend.instance_id.in_(ids)))
        session.execute(delete(JourneyStep).where(JourneyStep.instance_id.in_(ids)))
        session.execute(delete(JourneyInstance).where(JourneyInstance.id.in_(ids)))
        return len(ids)
