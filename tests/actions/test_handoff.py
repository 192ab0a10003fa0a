"""Escalation actions: the context package, the case in the DB, what the customer is told."""
import datetime as dt
import json

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import (
    ActionAskHandoffMessage,
    ActionDefaultFallback,
    ActionRequestHuman,
    ActionSaveHandoffMessage,
    ActionSessionStart,
    context_package,
)
from tests.actions.helpers import signed_metadata, make_tracker, responses, slot_events
from threadline import handoff
from threadline.db import cases

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]

DOMAIN = {"session_config": {"carry_over_slots_to_new_session": True}}


def user(text, intent, channel, confidence=0.9, **metadata):
    return {"event": "user", "text": text, "timestamp": 1.0,
            "parse_data": {"intent": {"name": intent, "confidence": confidence}, "entities": []},
            "metadata": signed_metadata(dict(metadata, channel=channel))}


def bot(text, action=None):
    events = [{"event": "action", "name": action}] if action else []
    return events + [{"event": "bot", "text": text, "timestamp": 2.0}, {"event": "action", "name": "action_listen"}]


def customer_on_two_channels(sender_id, **kwargs):
    """A customer who checked an order on the web and asks for a person on another app."""
    history = (
        [user("where is my order 482913", "check_order", "webchat", 0.95, trust="anonymous")]
        + bot("Order 482913 is shipped.", "action_show_order_status")
        + [user("this is useless", "out_of_scope", "whatsapp", 0.6)]
        + bot("Sorry, I can't help with that.", "utter_out_of_scope")
    )
    return make_tracker(
        {"order_number": "482913", "requested_slot": None},
        intent="request_human",
        text="I want to talk to a person",
        entities=[{"entity": "order_number", "value": "482913", "confidence_entity": 0.99,
                   "extractor": "RegexEntityExtractor"}],
        metadata={"channel": "whatsapp", "trust": "verified", "profile_name": "Ana", "message_id": "wamid.9"},
        events=history,
        sender_id=sender_id,
        **kwargs,
    )


def handoff_payload(dispatcher):
    return [m["custom"]["handoff"] for m in dispatcher.messages if (m.get("custom") or {}).get("handoff")][0]


async def test_asking_for_a_person_opens_a_case_with_the_whole_context():
    dispatcher = CollectingDispatcher()
    tracker = customer_on_two_channels("c_handoff_ctx")
    events = await ActionRequestHuman().run(dispatcher, tracker, {})

    case = cases.open_case_for("c_handoff_ctx")
    assert case.status == "queued" and case.reason == "customer_request" and case.queue == "orders"
    assert slot_events(events) == {"handoff_case": case.id, "handoff_reason": None, "requested_slot": None}
    assert {"event": "active_loop", "name": None} in [{k: e.get(k) for k in ("event", "name")} for e in events]
    assert responses(dispatcher)[0] == "utter_handoff_queued"
    assert dispatcher.messages[0]["case"] == case.id
    assert handoff_payload(dispatcher) == {"case": case.id, "transfer": True, "queue": "orders",
                                           "reason": "customer_request", "status": "queued"}

    context = case.context
    assert context["customer"] == {"id": "c_handoff_ctx", "name": "Ana", "trust": "verified",
                                   "locale": None, "new": False}
    assert context["channels"] == ["webchat", "whatsapp"] and context["channel"] == "whatsapp"
    assert context["nlu"]["intent"] == "request_human" and context["nlu"]["confidence"] == 0.99
    assert context["nlu"]["entities"] == [{"entity": "order_number", "value": "482913",
                                           "confidence_entity": 0.99, "extractor": "RegexEntityExtractor"}]
    assert context["slots"] == {"order_number": "482913"}
    assert context["reason_label"] == "Customer asked for a person"
    assert [(t["from"], t["channel"]) for t in context["transcript"]] == [
        ("customer", "webchat"), ("bot", "webchat"), ("customer", "whatsapp"), ("bot", "whatsapp"),
        ("customer", "whatsapp"),
    ]
    assert context["transcript"][0]["intent"] == "check_order" and context["transcript"][0]["confidence"] == 0.95
    assert context["sentiment"]["scores"][1] < 0 and "trend" in context["sentiment"]
    json.dumps(context)  # stored as JSON


async def test_asking_again_points_to_the_open_case():
    await ActionRequestHuman().run(CollectingDispatcher(), customer_on_two_channels("c_handoff_twice"), {})
    dispatcher = CollectingDispatcher()
    events = await ActionRequestHuman().run(dispatcher, customer_on_two_channels("c_handoff_twice"), {})
    assert responses(dispatcher)[0] == "utter_handoff_already_open"
    assert len(cases.handoff_requests("c_handoff_twice")) == 1
    assert slot_events(events)["handoff_case"] == cases.open_case_for("c_handoff_twice").id


async def test_outside_agent_hours_the_customer_is_told_and_offered_a_callback_or_message(monkeypatch):
    now = handoff.local_now()
    closed_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(now.weekday() + 1) % 7]
    monkeypatch.setenv("AGENT_HOURS", f"{closed_day} 08:00-20:00")
    dispatcher = CollectingDispatcher()
    await ActionRequestHuman().run(dispatcher, customer_on_two_channels("c_handoff_night"), {})
    message = dispatcher.messages[0]
    assert message["response"] == "utter_handoff_outside_hours"
    assert message["hours"] == f"{closed_day} 08:00-20:00" and message["opens"].endswith("at 08:00")
    case = cases.open_case_for("c_handoff_night")
    assert case.status == "queued" and case.unstaffed
    assert handoff_payload(dispatcher)["transfer"] is False


async def test_a_full_queue_is_said_honestly(monkeypatch):
    monkeypatch.setenv("AGENT_QUEUE_LIMIT", "0")
    dispatcher = CollectingDispatcher()
    await ActionRequestHuman().run(dispatcher, customer_on_two_channels("c_handoff_busy"), {})
    assert responses(dispatcher)[0] == "utter_handoff_queue_full"
    assert cases.open_case_for("c_handoff_busy").unstaffed


async def test_yes_after_unresolved_troubleshooting_goes_to_the_technical_queue():
    tracker = make_tracker(
        {"troubleshoot_problem": "internet", "troubleshoot_outcome": "unresolved"},
        intent="affirm", text="yes please",
        events=bot("I'm sorry, those are all the steps...", "utter_troubleshoot_unresolved"),
        sender_id="c_handoff_tech", metadata={"channel": "telegram"},
    )
    dispatcher = CollectingDispatcher()
    await ActionRequestHuman().run(dispatcher, tracker, {})
    case = cases.open_case_for("c_handoff_tech")
    assert (case.reason, case.queue) == ("troubleshooting_unresolved", "technical")
    assert case.context["slots"]["troubleshoot_problem"] == "internet"


async def test_two_fallbacks_in_a_row_bring_in_a_person():
    tracker = make_tracker(
        intent="nlu_fallback", text="blorp the flange",
        events=[user("zzkx wibble", "nlu_fallback", "webchat", 0.2)] + bot("Did you want to...?"),
        sender_id="c_handoff_fallback", metadata={"channel": "webchat"},
    )
    dispatcher = CollectingDispatcher()
    events = await ActionDefaultFallback().run(dispatcher, tracker, {})
    assert events[0] == {"event": "rewind", "timestamp": None}
    assert slot_events(events)["handoff_case"] == cases.open_case_for("c_handoff_fallback").id
    assert responses(dispatcher)[0] == "utter_handoff_queued_after_fallback"
    assert cases.open_case_for("c_handoff_fallback").reason == "repeated_fallback"


async def test_a_core_fallback_behaves_like_rasas_own():
    tracker = make_tracker(intent="greet", text="hello", sender_id="c_handoff_core")
    dispatcher = CollectingDispatcher()
    events = await ActionDefaultFallback().run(dispatcher, tracker, {})
    assert responses(dispatcher) == ["utter_default"] and events == [{"event": "rewind", "timestamp": None}]
    assert cases.open_case_for("c_handoff_core") is None


async def test_call_me_back_starts_the_message_form_and_the_message_lands_on_the_case():
    await ActionRequestHuman().run(CollectingDispatcher(), customer_on_two_channels("c_handoff_cb"), {})
    choose = make_tracker(intent="request_human", text='/request_human{"handoff_option": "callback"}',
                          entities=[{"entity": "handoff_option", "value": "callback"}], sender_id="c_handoff_cb")
    dispatcher = CollectingDispatcher()
    events = await ActionRequestHuman().run(dispatcher, choose, {})
    assert events[-1] == {"event": "followup", "name": "handoff_message_form", "timestamp": None}
    assert dispatcher.messages == []

    ask = CollectingDispatcher()
    await ActionAskHandoffMessage().run(ask, make_tracker({"handoff_option": "callback"}), {})
    assert responses(ask) == ["utter_ask_handoff_callback"]

    save = make_tracker({"handoff_option": "callback", "handoff_message": "+1 555 0100 after 6pm please"},
                        sender_id="c_handoff_cb")
    dispatcher = CollectingDispatcher()
    events = await ActionSaveHandoffMessage().run(dispatcher, save, {})
    case = cases.open_case_for("c_handoff_cb")
    assert case.callback_requested and case.customer_message == "+1 555 0100 after 6pm please"
    assert responses(dispatcher) == ["utter_handoff_callback_saved"]
    assert slot_events(events)["handoff_message"] is None and slot_events(events)["handoff_option"] is None


async def test_a_conversation_an_agent_owns_stays_paused_in_a_new_session():
    tracker = make_tracker({"order_number": "482913", "handoff_case": 7}, sender_id="c_handoff_session")
    tracker._paused = True
    events = await ActionSessionStart().run(CollectingDispatcher(), tracker, DOMAIN)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session_started" and kinds[-2:] == ["pause", "action"]
    assert slot_events(events) == {"order_number": "482913", "handoff_case": 7}
    tracker._paused = False
    events = await ActionSessionStart().run(CollectingDispatcher(), tracker, DOMAIN)
    assert "pause" not in [e["event"] for e in events]


def test_the_package_names_the_task_in_progress():
    tracker = make_tracker({"order_number": "482913"}, intent="request_human", active_loop="order_status_form")
    package = context_package(tracker, "customer_request")
    assert package["task"] == "checking order 482913" and package["active_loop"] == "order_status_form"


def test_agent_hours_spans_days_and_midnight():
    spans = handoff.parse_hours("Mon-Fri 08:00-20:00; Sat 22:00-02:00")
    monday = dt.datetime(2026, 11, 23, 9, 0)
    assert handoff.is_staffed(spans, monday)
    assert not handoff.is_staffed(spans, monday.replace(hour=20))
    assert handoff.is_staffed(spans, dt.datetime(2026, 11, 29, 1, 30))  # Sunday 01:30, Saturday's shift
    assert not handoff.is_staffed(spans, dt.datetime(2026, 11, 29, 2, 0))
    assert handoff.next_opening(spans, dt.datetime(2026, 11, 27, 21, 0)) == dt.datetime(2026, 11, 28, 22, 0)
    with pytest.raises(ValueError, match="AGENT_HOURS"):
        handoff.parse_hours("weekdays 9-5")
