"""Handoff cases, shared by the bot (``actions/``) and the agent desk (``connectors/agent.py``).

A case is opened by the bot when it escalates and then moves through the desk:
``queued`` -> ``accepted`` (an agent owns the conversation, the bot is paused)
-> ``closed`` (handed back to the bot, or resolved with a note). The rows live
in the business database (``threadline.db.queries``); this module adds what
both sides need around them:

* **Staffing.** ``AGENT_HOURS`` (e.g. ``"Mon-Sat 08:00-20:00"``, several spans
  separated by ``;``, a span may cross midnight) in ``AGENT_TIMEZONE`` (IANA
  name, default the server's local time), and ``AGENT_QUEUE_LIMIT`` (queued
  cases at most). Unset means always staffed and no limit.
* **Live notifications.** Every change is published as JSON on the Redis
  channel ``{THREADLINE_KEY_PREFIX}:desk``; the desk turns them into
  server-sent events. Conversation events reach the same channel from the
  rasa server (``connectors.agent.live.DeskEventBroker``).
"""
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from threadline import metrics, settings
from threadline.keys import Keys
from threadline.db import cases
from threadline.db.cases import CaseInfo

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(
    r"^\s*(?P<first>[a-z]{3})(?:\s*-\s*(?P<last>[a-z]{3}))?\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$",
    re.IGNORECASE,
)

REASONS = {
    "customer_request": "Customer asked for a person",
    "troubleshooting_unresolved": "Troubleshooting did not fix the problem",
    "repeated_fallback": "The assistant did not understand twice in a row",
    "frustration": "Customer seems frustrated",
}


def reason_label(reason: str) -> str:
    """A readable description of an escalation reason."""
    return REASONS.get(reason, reason.replace("_", " ").capitalize())


# ------------------------------------------------------------------- staffing


@dataclass(frozen=True)
class Span:
    """Agents work on ``days`` (0 = Monday) from ``start`` to ``end`` minutes after midnight."""

    days: frozenset
    start: int
    end: int

    def covers(self, weekday: int, minute: int) -> bool:
        """Whether the moment (weekday, minute of the day) is inside the span."""
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Crosses midnight: the early hours belong to the previous day's shift.
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"not a time of day: {text}")
    return hours * 60 + minutes


def parse_hours(spec: str) -> List[Span]:
    """``"Mon-Fri 08:00-20:00; Sat 09:00-13:00"`` as spans; raises ``ValueError`` if malformed."""
    spans = []
    for part in re.split(r"[;,]", spec):
        if not part.strip():
            continue
        match = _SPAN.match(part)
        if not match:
            raise ValueError(f"AGENT_HOURS: cannot read {part.strip()!r} (expected e.g. 'Mon-Sat 08:00-20:00')")
        first, last = match.group("first").lower(), (match.group("last") or match.group("first")).lower()
        if first not in DAYS or last not in DAYS:
            raise ValueError(f"AGENT_HOURS: unknown day in {part.strip()!r}")
        i, j = DAYS.index(first), DAYS.index(last)
        days = frozenset((i + k) % 7 for k in range((j - i) % 7 + 1))
        start, end = _minutes(match.group("start")), _minutes(match.group("end"))
        if start == end:
            raise ValueError(f"AGENT_HOURS: empty span {part.strip()!r}")
        spans.append(Span(days, start, end))
    if not spans:
        raise ValueError("AGENT_HOURS is empty")
    return spans


def local_now() -> dt.datetime:
    """Now, in ``AGENT_TIMEZONE`` (naive local time when unset)."""
    zone = settings.get().get_raw("AGENT_TIMEZONE")
    if zone:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(zone)).replace(tzinfo=None)
    return dt.datetime.now()


def is_staffed(spans: List[Span], now: dt.datetime) -> bool:
    """Whether ``now`` falls inside one of ``spans``."""
    minute = now.hour * 60 + now.minute
    return any(span.covers(now.weekday(), minute) for span in spans)


def next_opening(spans: List[Span], now: dt.datetime) -> Optional[dt.datetime]:
    """The next moment a span starts after ``now`` (within a week)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [
        midnight + dt.timedelta(days=offset, minutes=span.start)
        for offset in range(8)
        for span in spans
        if (now.weekday() + offset) % 7 in span.days
    ]
    later = [start for start in starts if start > now]
    return min(later) if later else None


@dataclass(frozen=True)
class Staffing:
    """Whether an agent can take a new case now, and if not, why and until when."""

    available: bool
    reason: Optional[str] = None  # outside_hours | queue_full
    hours: Optional[str] = None
    opens: Optional[str] = None  # e.g. "on Monday at 08:00"


def staffing(now: Optional[dt.datetime] = None, queued: Optional[int] = None) -> Staffing:
    """Check ``AGENT_HOURS`` and ``AGENT_QUEUE_LIMIT`` (``queued`` defaults to the DB count)."""
    spec = settings.get().get_raw("AGENT_HOURS")
    if spec:
        try:
            spans = parse_hours(spec)
        except ValueError:
            logger.exception("AGENT_HOURS is malformed; treating agents as available")
            spans = []
        now = now or local_now()
        if spans and not is_staffed(spans, now):
            opening = next_opening(spans, now)
            return Staffing(False, "outside_hours", spec, opening.strftime("on %A at %H:%M") if opening else None)
    limit = settings.get().get_raw("AGENT_QUEUE_LIMIT")
    if limit:
        waiting = cases.count_queued() if queued is None else queued
        if waiting >= int(limit):
            return Staffing(False, "queue_full", spec)
    return Staffing(True, hours=spec)


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class OpenedCase:
    """What ``open_case`` did: the case, whether it is new, and the staffing then."""

    case: CaseInfo
    created: bool
    staffing: Staffing


def open_case(customer_ref: str, reason: str, context: Dict[str, Any], queue: str) -> OpenedCase:
    """Open a case for the customer, or return the one still open; notifies the desk.

    The staffing check happens before the case is counted, so the case that
    fills the queue to ``AGENT_QUEUE_LIMIT`` is still accepted as staffed.
    """
    existing = cases.open_case_for(customer_ref)
    if existing is not None:
        ahead = cases.count_queued() - (existing.status == "queued")
        return OpenedCase(existing, False, staffing(queued=ahead))
    now = staffing()
    case_id = cases.record_handoff(customer_ref, reason, context, queue=queue, unstaffed=not now.available)
    case = cases.get_case(case_id)
    metrics.count_handoff((context or {}).get("channel"), reason, REASONS)
    notify(case, "opened")
    return OpenedCase(case, True, now)


def leave_message(case_id: int, text: str, callback: bool) -> CaseInfo:
    """Store what the customer wants the team to know; notifies the desk."""
    case = cases.add_customer_message(case_id, text, callback=callback)
    notify(case, "message")
    return case


def summary(case: CaseInfo) -> Dict[str, Any]:
    """The JSON-safe fields of a case the desk lists (no context package)."""
    customer = (case.context or {}).get("customer") or {}
    return {
        "id": case.id,
        "customer_ref": case.customer_ref,
        "customer_name": customer.get("name"),
        "channel": (case.context or {}).get("channel"),
        "reason": case.reason,
        "reason_label": reason_label(case.reason),
        "queue": case.queue,
        "status": case.status,
        "agent": case.agent,
        "unstaffed": case.unstaffed,
        "callback_requested": case.callback_requested,
        "created_at": _iso(case.created_at),
        "accepted_at": _iso(case.accepted_at),
        "closed_at": _iso(case.closed_at),
        "outcome": case.outcome,
    }


def _iso(value: Optional[dt.datetime]) -> Optional[str]:
    return value.isoformat() + "Z" if value else None


# ------------------------------------------------------------ notifications


def desk_channel() -> str:
    """The Redis pub/sub channel of case changes, which every desk hub follows."""
    return Keys().desk_channel()


def desk_events_channel() -> str:
    """The Redis pub/sub channel of conversation messages, followed only while a desk page is open."""
    return Keys().desk_events_channel()


def publish(message: Dict[str, Any], redis: Any = None, channel: Optional[str] = None) -> None:
    """Publish one desk notification (on ``channel``, else the case channel); a Redis failure is logged, never raised.

    The database row is the truth; a lost notification only delays the
    desk until its next refresh.
    """
    try:
        if redis is None:
            from threadline.redis_client import get_client

            redis = get_client()
        redis.publish(channel or desk_channel(), json.dumps(message, default=str))
    except Exception:
        logger.exception("could not notify the agent desk")


def notify(case: Optional[CaseInfo], change: str, redis: Any = None) -> None:
    """Tell every desk that ``case`` changed (opened, accepted, message, closed)."""
    if case is not None:
        publish({"type": "case", "change": change, "case": summary(case)}, redis)

