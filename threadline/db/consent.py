"""The consent ledger's reads and writes, and the record of suppressed sends.

The ledger (``consent_events``) is append-only: ``record`` adds a row, nothing
updates or deletes one (erasure replaces the customer reference by its HMAC).
``current`` is the projection: the latest row per (channel, purpose).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from sqlalchemy import func, select, update

from threadline.db.models import ConsentEvent, SuppressedSend
from threadline.db.queries import insert_row
from threadline.db.session import session_scope


def record(customer_ref: str, channel: str, purpose: str, state: str, source: str,
           wording_version: Optional[str] = None, detail: Optional[str] = None) -> int:
    """Append one consent change; returns its id."""
    return insert_row(ConsentEvent(
        customer_ref=customer_ref, channel=channel, purpose=purpose, state=state, source=source,
        wording_version=wording_version, detail=(detail or None) and detail[:255],
    ))


def current(customer_ref: str, channel: Optional[str] = None) -> Dict[Tuple[str, str], str]:
    """The current state per (channel, purpose): the latest ledger row of each."""
    latest = (
        select(ConsentEvent.channel, ConsentEvent.purpose, func.max(ConsentEvent.id).label("last"))
        .where(ConsentEvent.customer_ref == customer_ref)
        .group_by(ConsentEvent.channel, ConsentEvent.purpose)
    )
    if channel is not None:
        latest = latest.where(ConsentEvent.channel == channel)
    latest = latest.subquery()
    query = select(ConsentEvent.channel, ConsentEvent.purpose, ConsentEvent.state).join(
        latest, ConsentEvent.id == latest.c.last
    )
    with session_scope() as session:
        return {(row.channel, row.purpose): row.state for row in session.execute(query)}


def history(customer_ref: str) -> List[Dict[str, Any]]:
    """Every consent change of the customer, oldest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(ConsentEvent).where(ConsentEvent.customer_ref == customer_ref).order_by(ConsentEvent.id)
        ).all()
        return [
            {"channel": r.channel, "purpose": r.purpose, "state": r.state, "source": r.source,
             "wording_version": r.wording_version, "detail": r.detail, "at": r.created_at.isoformat()}
            for r in rows
        ]


def record_suppressed(customer_ref: str, channel: str, purpose: str, reason: str) -> int:
    """Keep the fact that a send was suppressed, and why (never the message)."""
    return insert_row(SuppressedSend(customer_ref=customer_ref, channel=channel, purpose=purpose, reason=reason))


def suppressed(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's suppressed sends, oldest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(SuppressedSend).where(SuppressedSend.customer_ref == customer_ref).order_by(SuppressedSend.id)
        ).all()
        return [{"channel": r.channel, "purpose": r.purpose, "reason": r.reason, "at": r.created_at.isoformat()}
                for r in rows]


def pseudonymise(customer_refs: Iterable[str], replacement: str) -> int:
    """Erasure: the customer's ledger and suppression rows keep their facts under ``replacement``."""
    refs = list(customer_refs)
    if not refs:
        return 0
    with session_scope() as session:
        changed = session.execute(
            update(ConsentEvent).where(ConsentEvent.customer_ref.in_(refs)).values(customer_ref=replacement)
        ).rowcount
        changed += session.execute(
            update(SuppressedSend).where(SuppressedSend.customer_ref.in_(refs)).values(customer_ref=replacement)
        ).rowcount
        return changed


def revoked_since(customer_ref: str, since) -> List[str]:
    """The channels on which the customer revoked service or marketing consent since ``since``."""
    with session_scope() as session:
        return sorted(set(session.scalars(
            select(ConsentEvent.channel).where(
                ConsentEvent.customer_ref == customer_ref, ConsentEvent.state == "revoked",
                ConsentEvent.purpose.in_(("service", "marketing")), ConsentEvent.created_at >= since,
            )
        )))
