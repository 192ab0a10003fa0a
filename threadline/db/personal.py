"""Personal fields in the business database: erased, exported, and the suppression list.

``erase`` blanks what identifies a person and keeps what the business must
(an order stays an order, an appointment a slot taken); ``export`` gathers a
customer's rows; ``suppress`` / ``is_suppressed`` keep the HMACs of erased
identifiers (``threadline.erasure.digest``), never the values.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

from sqlalchemy import select, update

from threadline.db.models import Appointment, Customer, ErasedIdentifier, Feedback, HandoffCase, Order
from threadline.db.session import session_scope

ERASED = "(erased)"


def erase(customer_ref: str, owner: Optional[int] = None, replacement: Optional[str] = None) -> Dict[str, Any]:
    """Blank the personal fields of a Threadline customer and, if given, of business customer ``owner``.

    The customer's rows stay (a slot stays taken) under ``replacement``.

    Returns ``{"counts": {...}, "identifiers": [(kind, value), ...]}``: the
    identifiers found on the way (for the suppression list).
    """
    identifiers: List[Tuple[str, str]] = []
    counts: Dict[str, int] = {}
    with session_scope() as session:
        for row in session.scalars(select(Appointment).where(Appointment.customer_ref == customer_ref)):
            if row.contact_email:
                identifiers.append(("email", row.contact_email))
        counts["appointments"] = session.execute(
            update(Appointment).where(Appointment.customer_ref == customer_ref)
            .values(contact_email=None, booked_by=None, customer_ref=replacement or customer_ref)
        ).rowcount
        counts["handoff_cases"] = session.execute(
            update(HandoffCase).where(HandoffCase.customer_ref == customer_ref)
            .values(context=None, customer_message=None, resolution=None, customer_ref=replacement or customer_ref)
        ).rowcount
        counts["feedback"] = session.execute(
            update(Feedback).where(Feedback.customer_ref == customer_ref)
            .values(comment=None, customer_ref=replacement or customer_ref)
        ).rowcount
        counts["business_customer"] = 0
        if owner:
            customer = session.get(Customer, owner)
            if customer is not None:
                identifiers += [(kind, value) for kind, value in
                                (("email", customer.email), ("phone", customer.phone), ("webref", customer.external_ref))
                                if value]
                customer.name = ERASED
                customer.email = f"erased-{customer.id}@erased.invalid"
                customer.phone = None
                customer.external_ref = None
                counts["business_customer"] = 1
                counts["orders"] = session.execute(
                    update(Order).where(Order.customer_id == owner).values(shipping_address=ERASED, postal_code="")
                ).rowcount
    return {"counts": counts, "identifiers": identifiers}


def suppress(digests: Iterable[Tuple[str, str]]) -> int:
    """Add (kind, HMAC) pairs to the suppression list (each once)."""
    added = 0
    with session_scope() as session:
        for kind, digest in digests:
            if session.scalar(select(ErasedIdentifier.id).where(ErasedIdentifier.digest == digest)) is None:
                session.add(ErasedIdentifier(digest=digest, kind=kind))
                added += 1
    return added


def is_suppressed(digest: str) -> bool:
    """Whether an HMAC is on the suppression list."""
    with session_scope() as session:
        return session.scalar(select(ErasedIdentifier.id).where(ErasedIdentifier.digest == digest)) is not None


def export(customer_ref: str, owner: Optional[int] = None) -> Dict[str, Any]:
    """The customer's rows: appointments, handoff cases, feedback and, if proven, the business profile and orders."""
    with session_scope() as session:
        data: Dict[str, Any] = {
            "appointments": [
                {"ref": a.ref, "service": a.service_type, "starts_at": a.starts_at.isoformat(), "status": a.status,
                 "contact_email": a.contact_email}
                for a in session.scalars(select(Appointment).where(Appointment.customer_ref == customer_ref))
            ],
            "handoff_cases": [
                {"id": c.id, "reason": c.reason, "status": c.status, "message": c.customer_message,
                 "resolution": c.resolution, "created_at": c.created_at.isoformat()}
                for c in session.scalars(select(HandoffCase).where(HandoffCase.customer_ref == customer_ref))
            ],
            "feedback": [
                {"helpful": f.helpful, "comment": f.comment, "topic": f.topic}
                for f in session.scalars(select(Feedback).where(Feedback.customer_ref == customer_ref))
            ],
        }
        if owner:
            customer = session.get(Customer, owner)
            if customer is not None:
                data["profile"] = {"name": customer.name, "email": customer.email, "phone": customer.phone,
                                   "web_ref": customer.external_ref}
                data["orders"] = [
                    {"number": o.number, "status": o.status, "shipping_address": o.shipping_address,
                     "postal_code": o.postal_code}
                    for o in session.scalars(select(Order).where(Order.customer_id == owner))
                ]
        return data
