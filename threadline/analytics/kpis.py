"""The KPIs, each defined exactly, by day and by channel, from the analytics tables.

A day is a UTC date. "Channel" is the channel of a session's first customer
message (sessions, containment, handoff rate, first response, resolution), of
the message (fallback rate), or the channel switched to (switch KPIs). Every
rate is a fraction between 0 and 1, or None when its denominator is 0.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import defaultdict
from typing import Any, Callable, Collection, Dict, Iterable, List, Optional

from sqlalchemy import select

from threadline.db.models import (
    AnalyticsSession,
    AnalyticsSwitch,
    AnalyticsTurn,
    Feedback,
    HandoffCase,
    JourneySend,
)
from threadline.db.session import session_scope

ALL = "all"

DEFINITIONS: Dict[str, str] = {
    "sessions": "Rasa sessions (a new one after 60 idle minutes) with at least one customer message.",
    "containment": "Sessions in which nobody asked for a person (no handoff case opened) and after which the "
                   "customer did not come back within 24 hours, divided by sessions.",
    "handoff_rate": "Sessions in which a handoff case was opened, divided by sessions.",
    "fallback_rate": "Customer messages the bot did not understand (NLU fallback, or a fallback action ran "
                     "before the next message), divided by customer messages.",
    "channel_switch_success": "Channel switches after which no slot the customer had already given was asked for "
                              "again and, if a task was under way, the bot picked it up, divided by switches.",
    "zero_repeat_rate": "Channel switches after which no slot the customer had already given was asked for "
                        "again, divided by switches.",
    "first_response_ms": "Median time from the first customer message of a session to the bot's first answer.",
    "resolution_seconds": "Median time from the first customer message of a session to its last event.",
    "csat": "'Was this helpful?' answers that said yes, divided by all answers (every channel).",
    "handoffs_accepted": "Handoff cases an agent accepted, divided by cases opened.",
    "time_to_accept_seconds": "Median time from a handoff case opening to an agent accepting it.",
    "handoffs_resolved": "Handoff cases an agent closed as resolved, divided by cases opened.",
    "journey_sends": "Journey messages and calls sent.",
}
FIELDS = ["day", "channel", "sessions", "containment", "handoff_rate", "messages", "fallback_rate", "switches",
          "channel_switch_success", "zero_repeat_rate", "first_response_ms", "resolution_seconds", "feedback",
          "csat", "handoff_cases", "handoffs_accepted", "time_to_accept_seconds", "handoffs_resolved", "journey_sends"]


def _rate(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _median(values: List[float]) -> Optional[float]:
    return round(statistics.median(values), 1) if values else None


def _between(column: Any, start: dt.date, end: dt.date) -> Any:
    return column.between(dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time.max))


def report(start: dt.date, end: dt.date, channel: Optional[str] = None,
           customers: Optional[Collection[str]] = None) -> Dict[str, Any]:
    """Every KPI by day and channel (and each day's ``all``), plus totals over the range, with definitions.

    ``customers`` restricts it to a segment (a list of customer ids).
    """
    def only(query: Any, model: Any) -> Any:
        return query.where(model.customer_ref.in_(list(customers))) if customers is not None else query

    with session_scope() as session:
        sessions = session.scalars(only(select(AnalyticsSession).where(
            AnalyticsSession.turns > 0, _between(AnalyticsSession.first_turn_at, start, end)), AnalyticsSession)).all()
        turns = session.execute(only(select(AnalyticsTurn.at, AnalyticsTurn.channel, AnalyticsTurn.fallback).where(
            _between(AnalyticsTurn.at, start, end)), AnalyticsTurn)).all()
        switches = session.scalars(only(select(AnalyticsSwitch).where(
            _between(AnalyticsSwitch.at, start, end)), AnalyticsSwitch)).all()
        feedback = session.execute(only(select(Feedback.created_at, Feedback.helpful).where(
            _between(Feedback.created_at, start, end)), Feedback)).all()
        cases = session.execute(only(select(HandoffCase.created_at, HandoffCase.accepted_at, HandoffCase.context, HandoffCase.outcome).where(
            _between(HandoffCase.created_at, start, end)), HandoffCase)).all()
        sends = session.execute(only(select(JourneySend.created_at, JourneySend.channel).where(
            JourneySend.state == "sent", _between(JourneySend.created_at, start, end)), JourneySend)).all()
        rows = _rows(sessions, turns, switches, feedback, cases, sends)
    if channel:
        rows = [r for r in rows if r["channel"] == channel]
    totals = _rows(sessions, turns, switches, feedback, cases, sends, by_day=False)
    if channel:
        totals = [t for t in totals if t["channel"] == channel]
    return {"start": start.isoformat(), "end": end.isoformat(), "rows": rows, "totals": totals,
            "definitions": DEFINITIONS}


def _rows(sessions, turns, switches, feedback, cases, sends, by_day: bool = True) -> List[Dict[str, Any]]:
    groups: Dict[tuple, Dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def add(when: dt.datetime, channel: Optional[str], kind: str, item: Any) -> None:
        day = when.date().isoformat() if by_day else "all days"
        groups[(day, channel or "unknown")][kind].append(item)
        groups[(day, ALL)][kind].append(item)

    for s in sessions:
        add(s.first_turn_at, s.channel, "sessions", s)
    for at, channel, fallback in turns:
        add(at, channel, "turns", fallback)
    for w in switches:
        add(w.at, w.to_channel, "switches", w)
    for at, helpful in feedback:
        groups[(at.date().isoformat() if by_day else "all days", ALL)]["feedback"].append(helpful)
    for created, accepted, context, outcome in cases:
        channel = (context or {}).get("channel") if isinstance(context, dict) else None
        add(created, channel, "cases", (created, accepted, outcome))
    for at, channel in sends:
        add(at, channel, "sends", 1)
    rows = []
    for (day, channel), got in sorted(groups.items()):
        s, w, f, c = got["sessions"], got["switches"], got["feedback"], got["cases"]
        contained = [x for x in s if not x.handoff and not x.contact_back_24h]
        accepted = [(b - a).total_seconds() for a, b, _ in c if b is not None]
        rows.append({
            "day": day, "channel": channel, "sessions": len(s),
            "containment": _rate(len(contained), len(s)),
            "handoff_rate": _rate(sum(1 for x in s if x.handoff), len(s)),
            "messages": len(got["turns"]), "fallback_rate": _rate(sum(1 for x in got["turns"] if x), len(got["turns"])),
            "switches": len(w),
            "channel_switch_success": _rate(sum(1 for x in w if not x.reasked and (x.resumed or not x.task_open)), len(w)),
            "zero_repeat_rate": _rate(sum(1 for x in w if not x.reasked), len(w)),
            "first_response_ms": _median([x.first_response_ms for x in s if x.first_response_ms is not None]),
            "resolution_seconds": _median([(x.last_at - x.first_turn_at).total_seconds() for x in s]),
            "feedback": len(f), "csat": _rate(sum(1 for x in f if x), len(f)),
            "handoff_cases": len(c), "handoffs_accepted": _rate(len(accepted), len(c)),
            "time_to_accept_seconds": _median(accepted),
            "handoffs_resolved": _rate(sum(1 for *_, outcome in c if outcome == "resolved"), len(c)),
            "journey_sends": len(got["sends"]),
        })
    return rows


def to_csv(rows: Iterable[Dict[str, Any]]) -> str:
    """The rows as CSV with a header (what the dashboard's export downloads)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def parse_range(start: Optional[str], end: Optional[str], today: Callable[[], dt.date] = dt.date.today,
                default_days: int = 30) -> tuple:
    """``start``/``end`` (YYYY-MM-DD) with defaults (the last 30 days); ValueError says what is wrong."""
    try:
        last = dt.date.fromisoformat(end) if end else today()
        first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=default_days - 1)
    except ValueError:
        raise ValueError("dates must look like 2026-12-04") from None
    if first > last:
        raise ValueError("the start date is after the end date")
    if (last - first).days > 366:
        raise ValueError("at most a year at a time")
    return first, last
