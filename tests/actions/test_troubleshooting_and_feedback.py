"""Guided troubleshooting steps, feedback storage, and stopping a task."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.feedback import ActionSaveFeedback, ValidateFeedbackForm
from actions.tasks import ActionStopTask
from actions.troubleshooting import GUIDES, ActionAskTroubleshootOutcome, ValidateTroubleshootForm
from threadline.db import queries
from tests.actions.helpers import make_tracker, slot_events


async def test_each_no_moves_to_the_next_step_until_none_are_left():
    validator = ValidateTroubleshootForm()
    for step in range(len(GUIDES["power"]) - 1):
        tracker = make_tracker({"troubleshoot_problem": "power", "troubleshoot_step": step})
        result = await validator.validate_troubleshoot_outcome("unresolved", CollectingDispatcher(), tracker, {})
        assert result == {"troubleshoot_outcome": None, "troubleshoot_step": step + 1}
    last = len(GUIDES["power"]) - 1
    tracker = make_tracker({"troubleshoot_problem": "power", "troubleshoot_step": last})
    result = await validator.validate_troubleshoot_outcome("unresolved", CollectingDispatcher(), tracker, {})
    assert result["troubleshoot_outcome"] == "unresolved"


async def test_yes_resolves():
    tracker = make_tracker({"troubleshoot_problem": "internet", "troubleshoot_step": 1})
    result = await ValidateTroubleshootForm().validate_troubleshoot_outcome("resolved", CollectingDispatcher(), tracker, {})
    assert result == {"troubleshoot_outcome": "resolved"}


async def test_step_prompt_names_the_step_and_offers_yes_no():
    dispatcher = CollectingDispatcher()
    await ActionAskTroubleshootOutcome().run(
        dispatcher, make_tracker({"troubleshoot_problem": "internet", "troubleshoot_step": 1}), {}
    )
    message = dispatcher.messages[0]
    assert message["text"].startswith(f"Step 2 of {len(GUIDES['internet'])}:")
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny"]


@pytest.mark.services
@pytest.mark.usefixtures("business_db")
async def test_feedback_is_stored_and_the_case_cleared():
    tracker = make_tracker(
        {"feedback_helpful": False, "feedback_comment": "took too long", "feedback_topic": "troubleshooting:internet",
         "troubleshoot_outcome": "resolved"},
        sender_id="c_feedback",
    )
    events = await ActionSaveFeedback().run(CollectingDispatcher(), tracker, {})
    assert queries.feedback_for("c_feedback") == [
        {"helpful": False, "comment": "took too long", "topic": "troubleshooting:internet"}
    ]
    assert slot_events(events)["troubleshoot_outcome"] is None


async def test_helpful_feedback_needs_no_comment():
    tracker = make_tracker({"feedback_helpful": True})
    slots = await ValidateFeedbackForm().required_slots(["feedback_helpful", "feedback_comment"], CollectingDispatcher(), tracker, {})
    assert slots == ["feedback_helpful"]


async def test_stopping_a_booking_forgets_its_answers_but_not_the_customer():
    tracker = make_tracker(
        {"appointment_service": "repair", "appointment_time": "2030-01-01T10:00", "appointment_email": "a@b.co"},
        active_loop="appointment_form",
    )
    dispatcher = CollectingDispatcher()
    events = await ActionStopTask().run(dispatcher, tracker, {})
    assert {"event": "active_loop", "name": None} in [{"event": e["event"], "name": e.get("name")} for e in events if e["event"] == "active_loop"]
    slots = slot_events(events)
    assert slots["appointment_service"] is None and slots["appointment_time"] is None
    assert "appointment_email" not in slots
