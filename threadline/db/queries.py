"""Every read and write the business logic needs, returning plain values.

Actions and the agent desk call these; none of them touches a Session.
"""
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy import func, select, update

from threadline.db.models import (
    Appointment,
    Availability,
    Feedback,
    HandoffRequest,
    Order,
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


def record_handoff(customer_ref: str, reason: str, context: Dict[str, Any]) -> int:
    """Queue a request for a human; returns the case number."""
    with session_scope() as session:
        request = HandoffRequest(customer_ref=customer_ref, reason=reason, context=context)
        session.add(request)
        session.flush()
        return request.id


def handoff_requests(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's handoff requests, oldest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(HandoffRequest)
            .where(HandoffRequest.customer_ref == customer_ref)
            .order_by(HandoffRequest.id)
        ).all()
        return [
            {"id": r.id, "reason": r.reason, "status": r.status, "context": r.context}
            for r in rows
        ]


def record_feedback(
    customer_ref: str, helpful: bool, comment: Optional[str], topic: Optional[str]
) -> int:
    """Store a 'Was this helpful?' answer."""
    with session_scope() as session:
        row = Feedback(customer_ref=customer_ref, helpful=helpful, comment=comment, topic=topic)
        session.add(row)
        session.flush()
        return row.id


def feedback_for(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's feedback, oldest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(Feedback).where(Feedback.customer_ref == customer_ref).order_by(Feedback.id)
        ).all()
        return [
            {"helpful": r.helpful, "comment": r.comment, "topic": r.topic} for r in rows
        ]
