"""SQLAlchemy models of the business database."""
import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()


def utcnow() -> dt.datetime:
    """Naive UTC timestamp (stored the same way in SQLite and PostgreSQL)."""
    return dt.datetime.utcnow().replace(microsecond=0)


class Customer(Base):
    """A customer of the business, with contact details used for verification."""

    __tablename__ = "customers"
    id = Column(Integer, primary_key=True)
    name = Column(String(120), nullable=False)
    email = Column(String(254), unique=True, nullable=False)
    phone = Column(String(20), unique=True, nullable=True)  # E.164
    # The website's own id for the customer: what a signed web identity names.
    external_ref = Column(String(64), unique=True, nullable=True)
    orders = relationship("Order", back_populates="customer")


class Order(Base):
    """An order with its delivery state."""

    __tablename__ = "orders"
    number = Column(String(6), primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False)
    status = Column(String(32), nullable=False)  # processing|shipped|out_for_delivery|delivered|cancelled
    carrier = Column(String(64), nullable=True)
    tracking_number = Column(String(64), nullable=True)
    expected_delivery = Column(Date, nullable=True)
    shipping_address = Column(String(255), nullable=False)
    postal_code = Column(String(16), nullable=False)
    customer = relationship("Customer", back_populates="orders")


class Availability(Base):
    """Bookable capacity for one service at one start time."""

    __tablename__ = "availability"
    __table_args__ = (UniqueConstraint("service_type", "starts_at"),)
    id = Column(Integer, primary_key=True)
    service_type = Column(String(32), nullable=False)
    starts_at = Column(DateTime, nullable=False, index=True)
    capacity = Column(Integer, nullable=False, default=1)


class Appointment(Base):
    """A booked (or cancelled) appointment, owned by a Threadline customer id."""

    __tablename__ = "appointments"
    id = Column(Integer, primary_key=True)
    ref = Column(String(12), unique=True, nullable=False)
    customer_ref = Column(String(64), nullable=False, index=True)
    service_type = Column(String(32), nullable=False)
    starts_at = Column(DateTime, nullable=False, index=True)
    status = Column(String(16), nullable=False, default="booked")  # booked|cancelled
    contact_email = Column(String(254), nullable=True)
    # The channel identity (an opaque hash) that booked it: it may manage it without step-up.
    booked_by = Column(String(64), nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)


class HandoffCase(Base):
    """A handoff case: the customer's request for a person, from queue to resolution.

    ``status`` goes ``queued`` -> ``accepted`` (an agent owns the conversation,
    the bot is paused) -> ``closed``; a queued case may also be closed directly.
    ``outcome`` says how it closed: ``handed_back`` (to the bot) or ``resolved``.
    ``context`` is the package the bot built when it escalated.
    """

    __tablename__ = "handoff_cases"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    reason = Column(String(64), nullable=False)
    queue = Column(String(32), nullable=False, default="general")
    status = Column(String(16), nullable=False, default="queued", index=True)  # queued|accepted|closed
    context = Column(JSON, nullable=True)
    # Escalated while nobody could take it (outside AGENT_HOURS, queue full).
    unstaffed = Column(Boolean, nullable=False, default=False)
    callback_requested = Column(Boolean, nullable=False, default=False)
    customer_message = Column(Text, nullable=True)
    agent = Column(String(64), nullable=True)
    accepted_at = Column(DateTime, nullable=True)
    closed_at = Column(DateTime, nullable=True)
    closed_by = Column(String(64), nullable=True)
    outcome = Column(String(16), nullable=True)  # handed_back|resolved
    resolution = Column(Text, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)


# The first version called a case a "handoff request"; the name stays importable.
HandoffRequest = HandoffCase


class Feedback(Base):
    """'Was this helpful?' answers after a resolved case."""

    __tablename__ = "feedback"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    topic = Column(String(64), nullable=True)
    helpful = Column(Boolean, nullable=False)
    comment = Column(Text, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class ConsentEvent(Base):
    """One change of a customer's consent: the ledger is append-only, its rows never change.

    ``purpose`` is ``service`` (messages the bot or an agent sends on its own
    about the customer's business), ``marketing`` or ``recording`` (a call);
    ``state`` is ``granted`` or ``revoked``; ``source`` is ``keyword``,
    ``intent``, ``platform_signal``, ``operator`` or ``notice`` (a recording
    notice the caller heard). The current state is the latest row per
    (customer, channel, purpose): ``threadline.db.consent``.
    """

    __tablename__ = "consent_events"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    channel = Column(String(32), nullable=False)
    purpose = Column(String(16), nullable=False)
    state = Column(String(8), nullable=False)
    source = Column(String(16), nullable=False)
    wording_version = Column(String(32), nullable=True)
    detail = Column(String(255), nullable=True)  # the keyword, the platform signal, the call
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)


class SuppressedSend(Base):
    """A message the bot or an agent would have sent on its own, not sent, and why."""

    __tablename__ = "suppressed_sends"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    channel = Column(String(32), nullable=False)
    purpose = Column(String(16), nullable=False)
    reason = Column(String(32), nullable=False)  # opted_out | no_marketing_consent | outside_window | erased
    created_at = Column(DateTime, nullable=False, default=utcnow)


class AuditEntry(Base):
    """Who did what to personal data: vault lookups, erasures, exports, operator consent changes."""

    __tablename__ = "audit_log"
    id = Column(Integer, primary_key=True)
    actor = Column(String(64), nullable=False)
    action = Column(String(32), nullable=False, index=True)
    customer_ref = Column(String(64), nullable=True, index=True)
    detail = Column(JSON, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class ErasedIdentifier(Base):
    """The suppression list: an HMAC of each identifier of an erased customer, never the value."""

    __tablename__ = "erased_identifiers"
    id = Column(Integer, primary_key=True)
    digest = Column(String(64), nullable=False, unique=True)
    kind = Column(String(16), nullable=False)  # customer | phone | email | channel
    created_at = Column(DateTime, nullable=False, default=utcnow)


class JourneyInstance(Base):
    """One customer's run of a journey (``journeys/<name>.yml``).

    ``status``: ``active`` -> ``completed`` (every step done), ``cancelled``
    (an operator, an opt-out, a step's condition), or ``replied`` (the
    customer wrote, and the journey ends on a reply). ``context`` is what the
    trigger or operator gave (vehicle, recall, time zone): never a raw email
    or phone number.
    """

    __tablename__ = "journey_instances"
    id = Column(Integer, primary_key=True)
    journey = Column(String(64), nullable=False, index=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    status = Column(String(16), nullable=False, default="active", index=True)
    context = Column(JSON, nullable=True)
    trigger = Column(String(64), nullable=False)  # the event, or "operator"
    started_by = Column(String(64), nullable=True)
    # A trigger event starts a journey once per (journey, event occurrence).
    dedupe_key = Column(String(160), unique=True, nullable=True)
    ends_on_reply = Column(Boolean, nullable=False, default=True)
    last_reply_at = Column(DateTime, nullable=True)
    started_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    ended_at = Column(DateTime, nullable=True)
    ended_reason = Column(String(64), nullable=True)


class JourneyStep(Base):
    """A step of a journey instance waiting to run, running, or done: the worker's queue.

    ``state``: ``pending`` (due at ``due_at``) -> ``claimed`` by a worker
    until ``lease_until`` -> ``done`` (``outcome`` says how: sent, suppressed,
    skipped, no_channel, failed, in_doubt) or ``cancelled``.
    """

    __tablename__ = "journey_steps"
    __table_args__ = (UniqueConstraint("instance_id", "step_index"),)
    id = Column(Integer, primary_key=True)
    instance_id = Column(Integer, ForeignKey("journey_instances.id"), nullable=False, index=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    step_index = Column(Integer, nullable=False)
    step_name = Column(String(64), nullable=False)
    due_at = Column(DateTime, nullable=False, index=True)
    state = Column(String(16), nullable=False, default="pending", index=True)
    outcome = Column(String(32), nullable=True)
    detail = Column(String(255), nullable=True)
    claimed_by = Column(String(64), nullable=True)
    lease_until = Column(DateTime, nullable=True)
    attempts = Column(Integer, nullable=False, default=0)  # failed sends so far
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)


class JourneySend(Base):
    """The send log: one row per (journey instance, step), written before the provider is called.

    ``state``: ``sending`` (written, provider not yet answered) -> ``sent``,
    ``failed`` (the provider refused: nothing went out, it may be retried) or
    ``in_doubt`` (the worker died while sending: it is never sent again).
    """

    __tablename__ = "journey_sends"
    __table_args__ = (UniqueConstraint("instance_id", "step_index"),)
    id = Column(Integer, primary_key=True)
    instance_id = Column(Integer, ForeignKey("journey_instances.id"), nullable=False)
    step_index = Column(Integer, nullable=False)
    customer_ref = Column(String(64), nullable=False, index=True)
    channel = Column(String(32), nullable=False)
    state = Column(String(16), nullable=False, default="sending")
    provider_ref = Column(String(128), nullable=True)
    status = Column(Integer, nullable=True)
    error = Column(String(255), nullable=True)
    worker = Column(String(64), nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)
    finished_at = Column(DateTime, nullable=True)


# ------------------------------------------------------------------ analytics
# Written only by the analytics consumer (threadline/analytics), keyed by the
# customer id, never holding a message's text, a phone number, an email or a name.


class AnalyticsSession(Base):
    """One Rasa session of a customer: its turns, whether a person was asked for, how it ended."""

    __tablename__ = "analytics_sessions"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    channel = Column(String(32), nullable=True, index=True)  # of its first customer turn
    started_at = Column(DateTime, nullable=False, index=True)
    first_turn_at = Column(DateTime, nullable=True)
    last_at = Column(DateTime, nullable=False)
    turns = Column(Integer, nullable=False, default=0)
    fallbacks = Column(Integer, nullable=False, default=0)
    handoff = Column(Boolean, nullable=False, default=False)
    first_response_ms = Column(Integer, nullable=True)
    contact_back_24h = Column(Boolean, nullable=False, default=False)  # the customer's next session began within 24 h


class AnalyticsTurn(Base):
    """One customer message: channel, intent, confidence, whether the bot fell back, how fast it answered."""

    __tablename__ = "analytics_turns"
    id = Column(Integer, primary_key=True)
    session_id = Column(Integer, ForeignKey("analytics_sessions.id"), nullable=True, index=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    channel = Column(String(32), nullable=True, index=True)
    at = Column(DateTime, nullable=False, index=True)
    intent = Column(String(64), nullable=True)
    confidence = Column(Integer, nullable=True)  # per mille
    fallback = Column(Boolean, nullable=False, default=False)
    response_ms = Column(Integer, nullable=True)


class AnalyticsSwitch(Base):
    """A customer turn on another channel than their previous one."""

    __tablename__ = "analytics_switches"
    id = Column(Integer, primary_key=True)
    customer_ref = Column(String(64), nullable=False, index=True)
    from_channel = Column(String(32), nullable=False)
    to_channel = Column(String(32), nullable=False, index=True)
    at = Column(DateTime, nullable=False, index=True)
    task_open = Column(Boolean, nullable=False, default=False)  # a form was active at the switch
    resumed = Column(Boolean, nullable=False, default=False)  # the bot picked the task up (said so)
    slots_carried = Column(Integer, nullable=False, default=0)  # slots the customer had already given
    reasked = Column(Boolean, nullable=False, default=False)  # one of those was asked for again


class AnalyticsSeen(Base):
    """Events already counted (their ``event_id``): an event delivered twice counts once."""

    __tablename__ = "analytics_seen"
    event_id = Column(String(160), primary_key=True)


class AnalyticsState(Base):
    """What the consumer remembers of a customer between events (open session, last channel, slots)."""

    __tablename__ = "analytics_state"
    customer_ref = Column(String(64), primary_key=True)
    state = Column(JSON, nullable=False)


class AnalyticsCheckpoint(Base):
    """How far the consumer has read a source (the SQL broker's last ``events.id``)."""

    __tablename__ = "analytics_checkpoints"
    source = Column(String(64), primary_key=True)
    position = Column(Integer, nullable=False, default=0)
