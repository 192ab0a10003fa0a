"""Who may see which personal data, and step-up for everyone else (the policy: ``threadline.ownership``).

Order details (carrier, tracking number, delivery date, address) go to the
order's owner, proven by a verified phone or signed web identity
(``TurnMetadata.owner``), or to a channel identity that gave the order's
postal code; appointments to the channel identity that booked them, a
verified identity of the same customer, or one that gave the appointment's
reference and booking email. Step-up state and failure budgets live with the
channel identity in Redis, never in the conversation.
"""
from typing import List, Optional

from rasa_sdk import Tracker

from actions.context import customer_ref, turn
from threadline.db import queries
from threadline.message import Trust
from threadline.ownership import StepUp, StepUpResult


def order_record(number: str) -> str:
    """The step-up subject of an order."""
    return f"order:{number}"


def appointment_record(ref: str) -> str:
    """The step-up subject of an appointment."""
    return f"appointment:{ref}"


def owns_order(tracker: Tracker, order: queries.OrderInfo) -> bool:
    """Whether the sender is the order's business customer."""
    owner = turn(tracker).owner
    return owner is not None and order.customer_id == owner


def may_see_order_details(tracker: Tracker, order: Optional[queries.OrderInfo]) -> bool:
    """Whether carrier, tracking number, delivery date and address may be told."""
    if order is None:
        return False
    return owns_order(tracker, order) or StepUp().passed(turn(tracker).identity, order_record(order.number))


def order_step_up_locked(tracker: Tracker, order: queries.OrderInfo) -> int:
    """Seconds until step-up for the order may be tried again by this sender (0: now)."""
    return StepUp().locked(order_record(order.number), turn(tracker).source)


def pass_order_step_up(tracker: Tracker, order: queries.OrderInfo) -> None:
    """Remember that this channel identity gave the order's postal code."""
    identity = turn(tracker).identity
    if identity:
        StepUp().grant(identity, order_record(order.number))


def fail_step_up(tracker: Tracker, record: str) -> StepUpResult:
    """Count a wrong answer for ``record`` from this sender."""
    meta = turn(tracker)
    return StepUp().fail(meta.identity, meta.source, record)


def may_manage(tracker: Tracker, appointment: queries.AppointmentInfo) -> bool:
    """Whether the sender may see, move or cancel ``appointment``."""
    meta = turn(tracker)
    if meta.identity and appointment.booked_by == meta.identity:
        return True
    if meta.trust == Trust.VERIFIED and meta.may_see_conversation_data and \
            appointment.customer_ref == customer_ref(tracker):
        return True
    return StepUp().passed(meta.identity, appointment_record(appointment.ref))


def manageable_appointments(tracker: Tracker) -> List[queries.AppointmentInfo]:
    """The customer's upcoming appointments this sender may manage, soonest first."""
    return [a for a in queries.upcoming_appointments(customer_ref(tracker)) if may_manage(tracker, a)]


def appointment_step_up_locked(tracker: Tracker, ref: str) -> int:
    """Seconds until step-up for the appointment ``ref`` may be tried again by this sender (0: now)."""
    return StepUp().locked(appointment_record(ref), turn(tracker).source)


def pass_appointment_step_up(tracker: Tracker, appointment: queries.AppointmentInfo) -> None:
    """Remember that this channel identity gave the appointment's reference and email."""
    identity = turn(tracker).identity
    if identity:
        StepUp().grant(identity, appointment_record(appointment.ref))
