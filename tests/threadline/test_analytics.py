"""The analytics consumer on the real business database and Rasa's own SQL event broker table.

Events are written the way the relay writes them (``SqlPublisher``: Rasa's
``SQLEventBroker``), then folded by the consumer; the KPIs are checked
against values worked out by hand from the scripted events.
"""
import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select, text

from threadline.analytics import consumer, kpis
from threadline.db.models import AnalyticsSession, AnalyticsSwitch, AnalyticsTurn
from threadline.db.session import session_scope

pytestmark = pytest.mark.services
DAY = dt.datetime(2026, 11, 2, 9, 0)


class Script:
    """Builds one customer's events, as Rasa and the connectors write them."""

    def __init__(self, start=DAY):
        self.customer = "c_" + uuid.uuid4().hex[:16]
        self.at = start
        self.events = []

    def _add(self, event, seconds=1.0):
        self.at += dt.timedelta(seconds=seconds)
        event.update(timestamp=self.at.replace(tzinfo=dt.timezone.utc).timestamp(), sender_id=self.customer,
                     event_id=f"{self.customer}:{len(self.events)}")
        self.events.append(event)
        return self

    def session(self, gap_hours=0.0):
        self.at += dt.timedelta(hours=gap_hours)
        return self._add({"event": "action", "name": "action_session_start"})._add({"event": "session_started"})

    def user(self, intent, channel, confidence=0.9):
        return self._add({"event": "user", "text": "secret text 555-0100", "input_channel": channel,
                          "metadata": {"channel": channel}, "parse_data": {
                              "intent": {"name": intent, "confidence": confidence}}})

    def bot(self, utter="utter_greet", seconds=0.5, **meta):
        return self._add({"event": "bot", "text": "Hello Jane", "metadata": {"utter_action": utter, **meta}}, seconds)

    def action(self, name):
        return self._add({"event": "action", "name": name})

    def slot(self, name, value):
        return self._add({"event": "slot", "name": name, "value": value})

    def loop(self, name):
        return self._add({"event": "active_loop", "name": name})


def publish(scripts):
    """Write the scripts' events into Rasa's SQL broker table, interleaved like real traffic."""
    from rasa.core.brokers.sql import SQLEventBroker

    from threadline.db.session import get_engine

    broker_table = SQLEventBroker.SQLBrokerEvent.__table__
    broker_table.metadata.create_all(get_engine(), tables=[broker_table])
    events = sorted((e for s in scripts for e in s.events), key=lambda e: e["timestamp"])
    with session_scope() as session:
        session.execute(broker_table.insert(), [{"sender_id": e["sender_id"], "data": json.dumps(e)} for e in events])
    return events


@pytest.fixture
def fresh(business_db):
    """Start the consumer at the end of whatever earlier tests left in the broker table."""
    consumer.catch_up()
    yield


def totals_for(report, channel="all"):
    (row,) = [r for r in report["totals"] if r["channel"] == channel]
    return row


def scripted_conversations():
    """Two contained web sessions; one WhatsApp session handed off; one WhatsApp session with a fallback
    whose customer came back within 24 h (not contained); a switch WhatsApp -> Telegram with the
    order task resumed; a switch with a given slot asked again."""
    contained = [Script().session().user("ask_faq", "webchat").bot("utter_faq", 0.4)
                 .user("say_thanks", "webchat").bot("utter_youre_welcome") for _ in range(2)]
    handed = (Script().session().user("request_human", "whatsapp").bot("utter_handoff", 1.0)
              .slot("handoff_case", 7))
    back = (Script().session().user("nlu_fallback", "whatsapp", 0.2).action("action_two_stage_fallback")
            .bot("utter_ask_rephrase", 2.0).session(gap_hours=3).user("greet", "whatsapp").bot())
    resumed = (Script().session().user("check_order", "whatsapp").bot().loop("order_status_form")
               .slot("requested_slot", "order_number").bot("utter_ask_order_number")
               .user("provide_info", "telegram").slot("order_number", "482913")
               .slot("continuity_acknowledged", "m1").bot("utter_continue_task"))
    reasked = (Script().session().user("check_order", "whatsapp").slot("order_number", "482913").bot()
               .user("check_order", "webchat").bot("utter_ask_order_number"))
    return contained + [handed, back, resumed, reasked]


def test_kpis_from_scripted_conversations_equal_the_hand_counted_values(fresh):
    scripts = scripted_conversations()
    publish(scripts)
    consumer.catch_up()

    who = {s.customer for s in scripts}
    report = kpis.report(DAY.date(), DAY.date(), customers=who)
    total = totals_for(report)
    # sessions: 2 contained + handed + back (2) + resumed + reasked = 7
    assert total["sessions"] == 7
    # contained: the 2 web ones, back's second session, resumed, reasked = 5 of 7
    assert total["containment"] == round(5 / 7, 4)
    assert total["handoff_rate"] == round(1 / 7, 4)
    # messages: 4 + 1 + 2 + 2 + 2 = 11; fallbacks: 1
    assert total["messages"] == 11 and total["fallback_rate"] == round(1 / 11, 4)
    assert total["switches"] == 2
    assert total["channel_switch_success"] == 0.5 and total["zero_repeat_rate"] == 0.5
    web = totals_for(report, "webchat")
    assert web["sessions"] == 2 and web["containment"] == 1.0 and web["first_response_ms"] == 400.0
    assert totals_for(report, "whatsapp")["first_response_ms"] == 1000.0  # median of 1000, 2000, 1000, 1000, 1000
    with session_scope() as session:
        switches = {s.to_channel: s for s in session.scalars(
            select(AnalyticsSwitch).where(AnalyticsSwitch.customer_ref.in_(who)))}
    assert switches["telegram"].task_open and switches["telegram"].resumed and not switches["telegram"].reasked
    assert switches["webchat"].reasked and switches["webchat"].slots_carried == 1
    assert "day,channel,sessions" in kpis.to_csv(report["rows"]).splitlines()[0]
    # The SQL views BI tools read give the same counts.
    ids = ",".join(f"'{c}'" for c in who)
    with session_scope() as session:
        sessions = session.execute(text(
            "select count(*), sum(case when not handoff and not contact_back_24h then 1 else 0 end) "
            f"from analytics_sessions where turns > 0 and customer_ref in ({ids})")).one()
        assert tuple(sessions) == (7, 5)
        day = session.execute(text("select sum(sessions), sum(contained), sum(handed_off) from analytics_daily_sessions "
                                   "where day = :d"), {"d": DAY.date().isoformat()}).one()
        assert day[0] >= 7 and day[1] >= 5 and day[2] >= 1
        switches = session.execute(text("select sum(switches), sum(successful), sum(zero_repeat) "
                                        "from analytics_daily_switches where day = :d"),
                                   {"d": DAY.date().isoformat()}).one()
        assert switches[0] >= 2 and switches[0] - switches[1] >= 1


def test_handoff_and_feedback_kpis_come_from_the_cases_and_answers(fresh):
    from threadline.db import cases
    from threadline.db.models import Feedback

    who = "c_" + uuid.uuid4().hex[:16]
    first = cases.record_handoff(who, "customer_request", {"channel": "whatsapp"})
    cases.record_handoff("c_" + uuid.uuid4().hex[:16], "frustration", {"channel": "whatsapp"})
    cases.accept_case(first, "alice")
    cases.close_case(first, "alice", "resolved", "fixed")
    with session_scope() as session:
        session.add_all([Feedback(customer_ref=who, helpful=True), Feedback(customer_ref=who, helpful=True),
                         Feedback(customer_ref=who, helpful=False)])
    today = dt.datetime.utcnow().date()
    total = totals_for(kpis.report(today, today, customers=[who]))
    assert total["handoff_cases"] == 1 and total["handoffs_accepted"] == 1.0 and total["handoffs_resolved"] == 1.0
    assert total["time_to_accept_seconds"] is not None and total["csat"] == round(2 / 3, 4)


def folded(scripts):
    """What the analytics tables hold of ``scripts``' customers, in script order (ids and customers left out)."""
    order = {s.customer: n for n, s in enumerate(scripts)}

    def rows(session, model, *fields):
        found = session.scalars(select(model).where(model.customer_ref.in_(order))).all()
        return sorted((order[row.customer_ref],) + tuple(getattr(row, f) for f in fields) for row in found)

    with session_scope() as session:
        return (
            rows(session, AnalyticsSession, "channel", "started_at", "last_at", "turns", "fallbacks", "handoff",
                 "contact_back_24h", "first_response_ms"),
            rows(session, AnalyticsTurn, "channel", "at", "intent", "confidence", "fallback", "response_ms"),
            rows(session, AnalyticsSwitch, "from_channel", "to_channel", "task_open", "resumed", "slots_carried",
                 "reasked"),
        )


def test_folding_one_event_at_a_time_or_all_at_once_gives_the_same_tables(fresh):
    # A batch keeps the customers' state and rows in memory and writes them back once: a turn answered in
    # the next batch, a switch resumed three batches later, must come out as if folded in one go.
    singly = scripted_conversations()
    publish(singly)
    while consumer.sql_once(batch=1):
        pass
    together = scripted_conversations()
    publish(together)
    consumer.catch_up()
    assert folded(singly) == folded(together)
    assert len(folded(singly)[1]) == 11 and len(folded(singly)[2]) == 2


def test_a_batch_reads_its_customers_state_in_a_few_queries_not_one_per_event(fresh):
    from sqlalchemy import event

    from threadline.db.session import get_engine

    first = [Script().session().user("greet", "whatsapp").bot() for _ in range(20)]
    publish(first)
    consumer.catch_up()
    # The same 20 customers again, 3 turns each: their state, sessions and turns are in the database now.
    again = []
    for script in first:
        before = len(script.events)
        for _ in range(3):
            script.user("check_order", "webchat").bot().slot("order_number", "482913")
        again.append(type("More", (), {"events": script.events[before:]})())
    publish(again)
    selects = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        assert consumer.sql_once(batch=500) == 20 * 3 * 3
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    # The checkpoint, Rasa's table, the events seen, the states, the open sessions: a handful of queries
    # whatever the batch holds, not one or two per event (there are 180; the consumer used to make 344).
    assert len(selects) <= 8, selects
    turns = folded(first)[1]
    assert len(turns) == 20 * 4 and all(t[6] is not None for t in turns)  # every turn answered


def test_an_event_delivered_twice_or_a_consumer_restarted_mid_stream_counts_once(fresh):
    scripts = [Script().session().user("greet", "telegram").bot() for _ in range(30)]
    events = publish(scripts)
    consumer.sql_once(batch=17)  # stopped after part of the stream
    publish([type("Again", (), {"events": events[:25]})()])  # the relay re-published some after a crash
    consumer.catch_up()  # the restarted consumer
    assert consumer.apply_batch([(e["sender_id"], e) for e in events]) == 0  # RabbitMQ redelivering them
    who = {s.customer for s in scripts}
    with session_scope() as session:
        turns = session.scalars(select(AnalyticsTurn).where(AnalyticsTurn.customer_ref.in_(who))).all()
        sessions = session.scalars(select(AnalyticsSession).where(AnalyticsSession.customer_ref.in_(who))).all()
    assert len(turns) == 30 and len(sessions) == 30 and all(s.turns == 1 for s in sessions)


def test_no_text_phone_email_or_name_reaches_the_analytics_tables(fresh):
    publish([Script().session().user("greet", "whatsapp").bot()])
    consumer.catch_up()
    with session_scope() as session:
        dump = " ".join(str(tuple(r)) for table in ("analytics_sessions", "analytics_turns", "analytics_switches",
                                                    "analytics_state")
                        for r in session.execute(text(f"select * from {table}")))
    for secret in ("secret text", "555-0100", "Jane", "@"):
        assert secret not in dump


def test_date_ranges_are_checked():
    assert kpis.parse_range("2026-11-01", "2026-11-30") == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    for bad in (("2026-13-01", None), ("2026-11-30", "2026-11-01"), ("2020-01-01", "2026-01-01")):
        with pytest.raises(ValueError):
            kpis.parse_range(*bad)
