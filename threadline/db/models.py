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
