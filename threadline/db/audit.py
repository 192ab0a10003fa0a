"""The audit log of personal-data operations (vault lookups, erasures, exports, operator changes)."""
from typing import Any, Dict, List, Optional

from sqlalchemy import select

from threadline.db.models import AuditEntry
from threadline.db.queries import insert_row
from threadline.db.session import session_scope


def record(actor: str, action: str, customer_ref: Optional[str], detail: Optional[Dict[str, Any]] = None) -> int:
    """Append one audit row; returns its id."""
    return insert_row(AuditEntry(actor=actor[:64], action=action[:32], customer_ref=customer_ref, detail=detail))


def entries(customer_ref: Optional[str] = None, action: Optional[str] = None) -> List[Dict[str, Any]]:
    """Audit rows, oldest first, optionally for one customer or one action."""
    query = select(AuditEntry).order_by(AuditEntry.id)
    if customer_ref is not None:
        query = query.where(AuditEntry.customer_ref == customer_ref)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    with session_scope() as session:
        return [
            {"actor": row.actor, "action": row.action, "customer_ref": row.customer_ref,
             "detail": row.detail, "at": row.created_at.isoformat()}
            for row in session.scalars(query).all()
        ]


def pseudonymise(customer_refs, replacement: str) -> int:
    """Erasure: the customer's audit rows keep their facts under ``replacement``."""
    from sqlalchemy import update

    refs = list(customer_refs)
    if not refs:
        return 0
    with session_scope() as session:
        return session.execute(
            update(AuditEntry).where(AuditEntry.customer_ref.in_(refs)).values(customer_ref=replacement)
        ).rowcount
