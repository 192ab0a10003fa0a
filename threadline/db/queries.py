"""Every read and write the business logic needs, returning plain values.

Actions call these (handoff cases are in ``threadline.db.cases``); none of
them hands out a Session.
"""
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy import func, select, update

from threadline.db.models import Appointment, Availability, Customer, Feedback, Order
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
    customer_id: Optional[int] = None


@dataclass(frozen=True)
class AppointmentInfo:
    """A booked appointment."""

    ref: str
    service_type: str
    starts_at: dt.datetime
    status: str
    contact_email: Optional[str]
    customer_ref: Optional[str] = None
    booked_by: Optional[str] = None


class SlotUnavailable(Exception):
    """The requested time has no free capacity (or is not bookable at all)."""


def insert_row(row: Any) -> int:
    """Add one row in its own transaction; returns its id."""
    with session_scope() as session:
        session.add(row)
        session.flush()
        return row.id


def rows_of_customer(session, model: Any, customer_ref: str) -> List[Any]:
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
            customer_id=order.customer_id,
        )


def business_customer_id(phone: Optional[str] = None, web_ref: Optional[str] = None) -> Optional[int]:
    """The business customer with this E.164 phone or website reference, if any."""
    if not phone and not web_ref:
        return None
    with session_scope() as session:
        column = Customer.phone if phone else Customer.external_ref
        return session.scalar(select(Customer.id).where(column == (phone or web_ref)))


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
        customer_ref=appointment.customer_ref,
        booked_by=appointment.booked_by,
    )


def book_appointment(
    customer_ref: str, service: str, when: dt.datetime, email: Optional[str], booked_by: Optional[str] = None
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
            booked_by=booked_by,
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


def appointment_by_ref(ref: str) -> Optional[AppointmentInfo]:
    """A booked, upcoming appointment by its reference, whoever booked it (for step-up)."""
    with session_scope() as session:
        row = session.scalar(
            select(Appointment).where(
                Appointment.ref == ref.strip().upper(),
                Appointment.status == "booked",
                Appointment.starts_at > dt.datetime.now(),
            )
        )
        return _info(row) if row else None


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


def record_feedback(
    customer_ref: str, helpful: bool, comment: Optional[str], topic: Optional[str]
) -> int:
    """Store a 'Was this helpful?' answer."""
    return insert_row(Feedback(customer_ref=customer_ref, helpful=helpful, comment=comment, topic=topic))


def feedback_for(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's feedback, oldest first."""
    with session_scope() as session:
        return [
            {"helpful": r.helpful, "comment": r.comment, "topic": r.topic}
            for r in rows_of_customer(session, Feedback, customer_ref)
        ]
