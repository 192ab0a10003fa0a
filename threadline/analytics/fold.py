"""Folding conversation events, in order, into the analytics tables.

One ``Folder`` per batch, inside the batch's transaction. Per customer it
keeps a small state (``analytics_state``): the open session, the channel of
the last customer message, the slots the customer has given, the active
form, the turn waiting for its first answer and the open channel switch.
What each event does:

* ``session_started``: a new session (the previous one, if the customer comes
  back within 24 h of its last event, is marked ``contact_back_24h``).
* ``user``: a turn (channel, intent, confidence; ``nlu_fallback`` is a
  fallback); on another channel than the previous message, a switch, noting
  whether a form was active and which slots were already given.
* ``bot``: the first answer to the waiting turn gives the response time (a
  journey's or an agent's message is not an answer); an ``utter_ask_<slot>``
  for a slot given before the switch marks the switch ``reasked``.
* ``action``: a fallback action marks the last turn (and session) fallen back.
* ``slot``: ``requested_slot`` for a slot given before the switch marks it
  ``reasked``; ``continuity_acknowledged`` marks it ``resumed``; a
  ``handoff_case`` marks the session handed off; the slots the forms ask
  for are tracked as given or not.
* ``active_loop``: the active form.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Iterable, Optional, Tuple

from sqlalchemy import select

from threadline.db.models import AnalyticsSession, AnalyticsState, AnalyticsSwitch, AnalyticsTurn

FALLBACK_ACTIONS = frozenset({"action_default_fallback", "action_two_stage_fallback", "action_default_ask_affirmation"})
FALLBACK_INTENTS = frozenset({"nlu_fallback"})
CONTACT_BACK = dt.timedelta(hours=24)


def _when(event: Dict[str, Any]) -> dt.datetime:
    stamp = event.get("timestamp")
    try:
        return dt.datetime.utcfromtimestamp(float(stamp))
    except (TypeError, ValueError, OverflowError):
        return dt.datetime.utcnow()


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


class Folder:
    """Applies events to the analytics tables within one database session.

    One per batch: ``preload`` the batch's customers, ``apply`` each event in
    order, then ``finish`` (which writes the customers' states) before the
    transaction commits.
    """

    def __init__(self, session: Any, asked_slots: Iterable[str]) -> None:
        self.session = session
        self.asked = frozenset(asked_slots)
        self.states: Dict[str, AnalyticsState] = {}
        self.working: Dict[str, Dict[str, Any]] = {}  # the batch's states as the events change them
        # The rows this batch touched, held here: SQLAlchemy's identity map holds clean rows only weakly,
        # so without this every event read its session (and turn) back from the database once more.
        self.rows: Dict[Tuple[type, int], Any] = {}

    def preload(self, customers: Iterable[str]) -> None:
        """Read the batch's customers' states and open sessions in two queries, not one query per customer."""
        wanted = [c for c in set(customers) if c not in self.states]
        if not wanted:
            return
        for row in self.session.scalars(select(AnalyticsState).where(AnalyticsState.customer_ref.in_(wanted))):
            self.states[row.customer_ref] = row
        for customer in wanted:
            if customer not in self.states:  # a customer seen for the first time
                self.states[customer] = AnalyticsState(customer_ref=customer, state={})
                self.session.add(self.states[customer])
        sessions = {(row.state or {}).get("session") for row in self.states.values()} - {None}
        sessions = [key for key in sessions if (AnalyticsSession, key) not in self.rows]
        if sessions:
            for row in self.session.scalars(select(AnalyticsSession).where(AnalyticsSession.id.in_(sessions))):
                self.rows[(AnalyticsSession, row.id)] = row

    def _get(self, model: type, key: Optional[int]) -> Any:
        """The row of ``model`` with primary key ``key`` (None if ``key`` is empty or the row is gone)."""
        if not key:
            return None
        row = self.rows.get((model, key))
        if row is None:
            row = self.session.get(model, key)
            if row is not None:
                self.rows[(model, key)] = row
        return row

    def _added(self, row: Any) -> Any:
        """Add a new row and flush it for its id, keeping it for the batch."""
        self.session.add(row)
        self.session.flush()
        self.rows[(type(row), row.id)] = row
        return row

    # ----------------------------------------------------------------- state

    def _state(self, customer: str) -> Dict[str, Any]:
        state = self.working.get(customer)
        if state is None:
            self.preload([customer])  # nothing to read if the batch preloaded its customers
            state = self.working[customer] = dict(self.states[customer].state or {})
        return state

    def finish(self) -> None:
        """Write the customers' states back, once per batch (not at every flush the batch makes)."""
        for customer, state in self.working.items():
            self.states[customer].state = state
        self.working = {}

    def _session_row(self, state: Dict[str, Any]) -> Optional[AnalyticsSession]:
        return self._get(AnalyticsSession, state.get("session"))

    def _new_session(self, customer: str, state: Dict[str, Any], at: dt.datetime) -> AnalyticsSession:
        previous = self._session_row(state)
        if previous is not None and at - previous.last_at <= CONTACT_BACK and previous.turns:
            previous.contact_back_24h = True
        row = self._added(AnalyticsSession(customer_ref=customer, started_at=at, last_at=at, turns=0, fallbacks=0,
                                           handoff=False, contact_back_24h=False))
        state.update(session=row.id, waiting=None, last_turn=None)
        return row

    # ------------------------------------------------------------------ events

    def apply(self, customer: str, event: Dict[str, Any]) -> None:
        """Fold one event of ``customer``'s conversation."""
        kind = event.get("event")
        state = self._state(customer)
        at = _when(event)
        if kind == "session_started":
            self._new_session(customer, state, at)
        else:
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                if kind == "user" and not state.get("session"):
                    self._new_session(customer, state, at)
                handler(customer, state, event, at)
            session = self._session_row(state)
            if session is not None and at > session.last_at:
                session.last_at = at

    def _on_user(self, customer: str, state: Dict[str, Any], event: Dict[str, Any], at: dt.datetime) -> None:
        metadata = event.get("metadata") or {}
        channel = metadata.get("channel") or event.get("input_channel") or None
        intent = ((event.get("parse_data") or {}).get("intent") or {})
        name = intent.get("name")
        confidence = intent.get("confidence")
        turn = self._added(AnalyticsTurn(
            session_id=state.get("session"), customer_ref=customer, channel=channel, at=at,
            intent=(name or None) and str(name)[:64],
            confidence=int(round(float(confidence) * 1000)) if isinstance(confidence, (int, float)) else None,
            fallback=name in FALLBACK_INTENTS,
        ))
        session = self._session_row(state)
        if session is not None:
            session.turns += 1
            session.channel = session.channel or channel
            session.first_turn_at = session.first_turn_at or at
            if turn.fallback:
                session.fallbacks += 1
        state.update(waiting=turn.id, last_turn=turn.id)
        previous = state.get("channel")
        if channel and previous and channel != previous:
            given = sorted(slot for slot, filled in (state.get("slots") or {}).items() if filled)
            switch = self._added(AnalyticsSwitch(customer_ref=customer, from_channel=previous, to_channel=channel,
                                                 at=at, task_open=bool(state.get("loop")), resumed=False,
                                                 slots_carried=len(given), reasked=False))
            state.update(switch=switch.id, switch_slots=given)
        if channel:
            state["channel"] = channel

    def _switch(self, state: Dict[str, Any]) -> Optional[AnalyticsSwitch]:
        return self._get(AnalyticsSwitch, state.get("switch"))

    def _reasked(self, state: Dict[str, Any], slot: Optional[str]) -> None:
        if slot and slot in (state.get("switch_slots") or []):
            switch = self._switch(state)
            if switch is not None:
                switch.reasked = True

    def _on_bot(self, customer: str, state: Dict[str, Any], event: Dict[str, Any], at: dt.datetime) -> None:
        metadata = event.get("metadata") or {}
        if metadata.get("journey") or metadata.get("agent"):
            return  # the bot writing on its own, or a person: not the bot's answer to a turn
        if state.get("waiting"):
            turn = self._get(AnalyticsTurn, state["waiting"])
            if turn is not None:
                turn.response_ms = max(0, int((at - turn.at).total_seconds() * 1000))
                session = self._session_row(state)
                if session is not None and session.first_response_ms is None:
                    session.first_response_ms = turn.response_ms
            state["waiting"] = None
        utter = str(metadata.get("utter_action") or "")
        if utter.startswith("utter_ask_"):
            self._reasked(state, utter[len("utter_ask_"):])

    def _on_action(self, customer: str, state: Dict[str, Any], event: Dict[str, Any], at: dt.datetime) -> None:
        if event.get("name") in FALLBACK_ACTIONS and state.get("last_turn"):
            turn = self._get(AnalyticsTurn, state["last_turn"])
            if turn is not None and not turn.fallback:
                turn.fallback = True
                session = self._session_row(state)
                if session is not None:
                    session.fallbacks += 1

    def _on_slot(self, customer: str, state: Dict[str, Any], event: Dict[str, Any], at: dt.datetime) -> None:
        name, value = event.get("name"), event.get("value")
        if name == "requested_slot":
            self._reasked(state, value if isinstance(value, str) else None)
        elif name == "continuity_acknowledged" and value:
            switch = self._switch(state)
            if switch is not None:
                switch.resumed = True
        elif name == "handoff_case" and value:
            session = self._session_row(state)
            if session is not None:
                session.handoff = True
        if name in self.asked:
            slots = dict(state.get("slots") or {})
            slots[name] = value is not None
            state["slots"] = slots

    def _on_active_loop(self, customer: str, state: Dict[str, Any], event: Dict[str, Any], at: dt.datetime) -> None:
        state["loop"] = event.get("name") or None
