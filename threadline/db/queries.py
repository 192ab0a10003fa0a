"""Every read and write the business logic needs, returning plain values.

Actions and the agent desk call these; none of them touches a Session.
"""
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy import func, or_, select, update

from threadline.db.models import (
    Appointment,
    Availability,
    Feedback,
    HandoffCase,
    Order,
    utcnow,
)
from threadline.db.session import session_scope


@dataclass(frozen=True)
class OrderInfo:
    """What the assistant may say about an order (address only after step-up)."""

    number: str
    status: str
    carrier: Optional[str]
    tracking_number: Optional[str]
    expected_delivery: Optional[dt.date]
    shipping_address: str
    postal_code: str


@dataclass(frozen=True)
class AppointmentInfo:
    """A booked appointment."""

    ref: str
    service_type: str
    starts_at: dt.datetime
    status: str
    contact_email: Optional[str]


class SlotUnavailable(Exception):
    """The requested time has no free capacity (or is not bookable at all)."""


def _insert(row: Any) -> int:
    """Add one row in its own transaction; returns its id."""
    with session_scope() as session:
        session.add(row)
        session.flush()
        return row.id


def _of_customer(session, model: Any, customer_ref: str) -> List[Any]:
    """A customer's rows of ``model``, oldest first."""
    return session.scalars(
        select(model).where(model.customer_ref == customer_ref).order_by(model.id)
    ).all()


def get_order(number: str) -> Optional[OrderInfo]:
    """The order with this number, or None."""
    with session_scope() as session:
        order = session.get(Order, number)
        if order is None:
            return None
        return OrderInfo(
            number=order.number,
            status=order.status,
            carrier=order.carrier,
            tracking_number=order.tracking_number,
            expected_delivery=order.expected_delivery,
            shipping_address=order.shipping_address,
            postal_code=order.postal_code,
        )


def _booked_count(session, service: str, when: dt.datetime) -> int:
    return session.scalar(
        select(func.count(Appointment.id)).where(
            Appointment.service_type == service,
            Appointment.starts_at == when,
            Appointment.status == "booked",
        )
    )


def is_available(service: str, when: dt.datetime) -> bool:
    """Whether ``service`` can be booked at ``when``."""
    with session_scope() as session:
        slot = session.scalar(
            select(Availability).where(
                Availability.service_type == service, Availability.starts_at == when
            )
        )
        return slot is not None and _booked_count(session, service, when) < slot.capacity


def free_slots_near(service: str, when: dt.datetime, limit: int = 3) -> List[dt.datetime]:
    """The free start times closest to ``when`` (same day first), in the future."""
    now = dt.datetime.now()
    window_start = max(now, when - dt.timedelta(days=3))
    with session_scope() as session:
        candidates = session.scalars(
            select(Availability)
            .where(
                Availability.service_type == service,
                Availability.starts_at > window_start,
                Availability.starts_at <= when + dt.timedelta(days=7),
            )
            .order_by(Availability.starts_at)
        ).all()
        free = [
            slot.starts_at
            for slot in candidates
            if _booked_count(session, service, slot.starts_at) < slot.capacity
            and slot.starts_at != when
        ]
    free.sort(key=lambda t: (t.date() != when.date(), abs((t - when).total_seconds())))
    return sorted(free[:limit])


def _lock_slot(session, service: str, when: dt.datetime) -> Availability:
    # A no-op UPDATE takes the row's write lock first, on PostgreSQL and on
    # SQLite alike, so the count below sees every booking committed before it.
    session.execute(
        update(Availability)
        .where(Availability.service_type == service, Availability.starts_at == when)
        .values(capacity=Availability.capacity)
    )
    slot = session.scalar(
        select(Availability).where(Availability.service_type == service, Availability.starts_at == when)
    )
    if slot is None or _booked_count(session, service, when) >= slot.capacity:
        raise SlotUnavailable(f"{service} at {when:%Y-%m-%d %H:%M} is not available")
    return slot


def _info(appointment: Appointment) -> AppointmentInfo:
    return AppointmentInfo(
        ref=appointment.ref,
        service_type=appointment.service_type,
        starts_at=appointment.starts_at,
        status=appointment.status,
        contact_email=appointment.contact_email,
    )


def book_appointment(
    customer_ref: str, service: str, when: dt.datetime, email: Optional[str]
) -> AppointmentInfo:
    """Book a slot, or raise SlotUnavailable if someone else took it meanwhile."""
    with session_scope() as session:
        _lock_slot(session, service, when)
        appointment = Appointment(
            ref="APT-" + secrets.token_hex(3).upper(),
            customer_ref=customer_ref,
            service_type=service,
            starts_at=when,
            status="booked",
            contact_email=email,
        )
        session.add(appointment)
        session.flush()
        return _info(appointment)


def upcoming_appointments(customer_ref: str) -> List[AppointmentInfo]:
    """The customer's booked appointments that have not started yet, soonest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(Appointment)
            .where(
                Appointment.customer_ref == customer_ref,
                Appointment.status == "booked",
                Appointment.starts_at > dt.datetime.now(),
            )
            .order_by(Appointment.starts_at)
        ).all()
        return [_info(row) for row in rows]


def get_appointment(customer_ref: str, ref: str) -> Optional[AppointmentInfo]:
    """One of the customer's appointments by reference."""
    with session_scope() as session:
        row = session.scalar(
            select(Appointment).where(
                Appointment.customer_ref == customer_ref, Appointment.ref == ref
            )
        )
        return _info(row) if row else None


def reschedule_appointment(customer_ref: str, ref: str, when: dt.datetime) -> AppointmentInfo:
    """Move a booked appointment to a free time."""
    with session_scope() as session:
        row = session.scalar(
            select(Appointment)
            .where(Appointment.customer_ref == customer_ref, Appointment.ref == ref)
            .with_for_update()
        )
        if row is None or row.status != "booked":
            raise LookupError(f"no booked appointment {ref}")
        _lock_slot(session, row.service_type, when)
        row.starts_at = when
        session.flush()
        return _info(row)


def cancel_appointment(customer_ref: str, ref: str) -> AppointmentInfo:
    """Cancel a booked appointment."""
    with session_scope() as session:
        row = session.scalar(
            select(Appointment).where(
                Appointment.customer_ref == customer_ref, Appointment.ref == ref
            )
        )
        if row is None or row.status != "booked":
            raise LookupError(f"no booked appointment {ref}")
        row.status = "cancelled"
        session.flush()
        return _info(row)


OPEN_STATUSES = ("queued", "accepted")


@dataclass(frozen=True)
class CaseInfo:
    """A handoff case as the bot and the agent desk see it."""

    id: int
    customer_ref: str
    reason: str
    queue: str
    status: str
    context: Dict[str, Any]
    unstaffed: bool
    callback_requested: bool
    customer_message: Optional[str]
    agent: Optional[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    accepted_at: Optional[dt.datetime]
    closed_at: Optional[dt.datetime]
    closed_by: Optional[str]
    outcome: Optional[str]
    resolution: Optional[str]

    @property
    def is_open(self) -> bool:
        """Queued or accepted."""
        return self.status in OPEN_STATUSES


class CaseConflict(Exception):
    """The case is not in a state that allows the change; ``case`` is its current state."""

    def __init__(self, message: str, case: Optional[CaseInfo]) -> None:
        super().__init__(message)
        self.case = case


def _case(row: HandoffCase) -> CaseInfo:
    return CaseInfo(
        id=row.id,
        customer_ref=row.customer_ref,
        reason=row.reason,
        queue=row.queue,
        status=row.status,
        context=row.context or {},
        unstaffed=bool(row.unstaffed),
        callback_requested=bool(row.callback_requested),
        customer_message=row.customer_message,
        agent=row.agent,
        created_at=row.created_at,
        updated_at=row.updated_at,
        accepted_at=row.accepted_at,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        outcome=row.outcome,
        resolution=row.resolution,
    )


def record_handoff(
    customer_ref: str,
    reason: str,
    context: Dict[str, Any],
    queue: str = "general",
    unstaffed: bool = False,
) -> int:
    """Queue a request for a human; returns the case number."""
    return _insert(
        HandoffCase(customer_ref=customer_ref, reason=reason, context=context, queue=queue, unstaffed=unstaffed)
    )


def handoff_requests(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's handoff cases, oldest first (id, reason, status, context)."""
    with session_scope() as session:
        return [
            {"id": r.id, "reason": r.reason, "status": r.status, "context": r.context}
            for r in _of_customer(session, HandoffCase, customer_ref)
        ]


def get_case(case_id: int) -> Optional[CaseInfo]:
    """The case with this number, or None."""
    with session_scope() as session:
        row = session.get(HandoffCase, case_id)
        return _case(row) if row else None


def open_case_for(customer_ref: str) -> Optional[CaseInfo]:
    """The customer's newest queued or accepted case, or None."""
    with session_scope() as session:
        row = session.scalar(
            select(HandoffCase)
            .where(HandoffCase.customer_ref == customer_ref, HandoffCase.status.in_(OPEN_STATUSES))
            .order_by(HandoffCase.id.desc())
            .limit(1)
        )
        return _case(row) if row else None


def list_cases(statuses=OPEN_STATUSES, limit: int = 200) -> List[CaseInfo]:
    """Cases in ``statuses``, oldest first (the order agents should take them)."""
    with session_scope() as session:
        rows = session.scalars(
            select(HandoffCase)
            .where(HandoffCase.status.in_(tuple(statuses)))
            .order_by(HandoffCase.created_at, HandoffCase.id)
            .limit(limit)
        ).all()
        return [_case(row) for row in rows]


def count_queued() -> int:
    """How many cases wait for an agent."""
    with session_scope() as session:
        return session.scalar(
            select(func.count(HandoffCase.id)).where(HandoffCase.status == "queued")
        )


def _conditional_update(case_id: int, conditions, values: Dict[str, Any], refusal: str) -> CaseInfo:
    """Apply ``values`` if the row still meets ``conditions``, in one UPDATE.

    One statement decides, so of two agents acting at once exactly one wins,
    on SQLite and PostgreSQL alike; the loser gets ``CaseConflict``.
    """
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(HandoffCase)
            .where(HandoffCase.id == case_id, *conditions)
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        row = session.get(HandoffCase, case_id)
        if row is not None:
            session.refresh(row)
        if result.rowcount != 1:
            raise CaseConflict(refusal, _case(row) if row else None)
        return _case(row)


def accept_case(case_id: int, agent: str) -> CaseInfo:
    """Give a queued case to ``agent``; raises ``CaseConflict`` if it is not queued any more."""
    return _conditional_update(
        case_id,
        [HandoffCase.status == "queued"],
        {"status": "accepted", "agent": agent, "accepted_at": utcnow()},
        "case is not waiting in the queue",
    )


def close_case(case_id: int, agent: str, outcome: str, resolution: Optional[str]) -> CaseInfo:
    """Close a case: one ``agent`` accepted, or one nobody accepted yet.

    ``outcome`` is ``handed_back`` (the bot takes over again) or ``resolved``.
    Raises ``CaseConflict`` if it is closed already or belongs to another agent.
    """
    return _conditional_update(
        case_id,
        [
            HandoffCase.status.in_(OPEN_STATUSES),
            or_(HandoffCase.agent == agent, HandoffCase.agent.is_(None)),
        ],
        {
            "status": "closed",
            "agent": func.coalesce(HandoffCase.agent, agent),
            "closed_at": utcnow(),
            "closed_by": agent,
            "outcome": outcome,
            "resolution": resolution,
        },
        "case is closed or belongs to another agent",
    )


def add_customer_message(case_id: int, text: str, callback: bool = False) -> CaseInfo:
    """Attach a message the customer left for the team (and a callback request) to an open case."""
    with session_scope() as session:
        row = session.get(HandoffCase, case_id)
        if row is None or row.status not in OPEN_STATUSES:
            raise CaseConflict("case is not open", _case(row) if row else None)
        row.customer_message = "\n\n".join(filter(None, [row.customer_message, text.strip()]))
        row.callback_requested = bool(row.callback_requested or callback)
        session.flush()
        return _case(row)


def record_feedback(
    customer_ref: str, helpful: bool, comment: Optional[str], topic: Optional[str]
) -> int:
    """Store a 'Was this helpful?' answer."""
    return _insert(Feedback(customer_ref=customer_ref, helpful=helpful, comment=comment, topic=topic))


def feedback_for(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's feedback, oldest first."""
    with session_scope() as session:
        return [
            {"helpful": r.helpful, "comment": r.comment, "topic": r.topic}
            for r in _of_customer(session, Feedback, customer_ref)
        ]
