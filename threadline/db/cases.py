"""Handoff cases: the customer's request for a person, from queue to resolution.

The bot (``threadline.handoff``) opens them; the agent desk moves them on.
Every change that two agents could race is one conditional UPDATE, so exactly
one wins on SQLite and PostgreSQL alike.
"""
import datetime as dt
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy import func, or_, select, update

from threadline.db.models import HandoffCase, utcnow
from threadline.db.queries import insert_row, rows_of_customer
from threadline.db.session import session_scope

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
    return insert_row(
        HandoffCase(customer_ref=customer_ref, reason=reason, context=context, queue=queue, unstaffed=unstaffed)
    )


def handoff_requests(customer_ref: str) -> List[Dict[str, Any]]:
    """The customer's handoff cases, oldest first (id, reason, status, context)."""
    with session_scope() as session:
        return [
            {"id": r.id, "reason": r.reason, "status": r.status, "context": r.context}
            for r in rows_of_customer(session, HandoffCase, customer_ref)
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
    Emits ``case_closed`` (journeys it triggers start, once per case).
    """
    closed = _conditional_update(
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
    from threadline.journeys import service as journeys

    journeys.emit_safely("case_closed", closed.customer_ref, {"case": str(closed.id), "outcome": outcome},
                         occurrence=str(closed.id))
    return closed


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
