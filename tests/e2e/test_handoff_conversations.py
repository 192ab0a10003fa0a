"""Every escalation trigger in a real conversation (rasa REST channel, trained model, action server)."""
import json

import pytest

from tests.e2e.test_conversations import Chat
from threadline.db import queries

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def handoff_payload(messages):
    return [m["custom"]["handoff"] for m in messages if (m.get("custom") or {}).get("handoff")]


def test_asking_for_a_person_opens_a_case_and_tells_a_voice_connector_to_transfer(stack):
    chat = Chat(stack)
    chat.say("where is my order 482913")
    messages = chat.say("I want to talk to a person")
    assert "connecting you with a member of our team" in " ".join(m.get("text", "") for m in messages)
    case = queries.open_case_for(chat.sender)
    assert handoff_payload(messages) == [{"case": case.id, "transfer": True, "queue": "orders",
                                          "reason": "customer_request", "status": "queued"}]
    assert case.context["slots"]["order_number"] == "482913"
    assert [t["from"] for t in case.context["transcript"]][:2] == ["customer", "bot"]


def test_yes_to_a_person_after_troubleshooting_did_not_help(stack):
    chat = Chat(stack)
    assert "Step 1 of 4" in chat.say_text("my internet is not working")
    for step in (2, 3, 4):
        assert f"Step {step} of 4" in chat.say_text("no")
    assert "Would you like to talk to a person?" in chat.say_text("no")
    assert "connecting you with a member of our team" in chat.say_text("yes")
    case = queries.open_case_for(chat.sender)
    assert (case.reason, case.queue) == ("troubleshooting_unresolved", "technical")


def test_two_fallbacks_in_a_row_bring_in_a_person(stack):
    chat = Chat(stack)
    assert "Could you say it another way?" in chat.say_text("/nlu_fallback")
    assert "I'm not getting this right" in chat.say_text("/nlu_fallback")
    assert queries.open_case_for(chat.sender).reason == "repeated_fallback"
    assert "Threadline" in chat.say_text("hi")  # and the bot carries on


def test_a_frustrated_customer_is_offered_a_person_without_asking(stack):
    chat = Chat(stack)
    chat.say("this is useless")
    assert queries.open_case_for(chat.sender) is None
    answer = chat.say("worst service ever, I am so angry!!!")
    assert "I'm sorry this has been frustrating" in answer[0]["text"]  # first, then the usual answer
    assert len([m for m in answer if m.get("text")]) >= 2, answer
    case = queries.open_case_for(chat.sender)
    assert case.reason == "frustration" and case.context["sentiment"]["cues"]


def test_a_message_for_the_team_is_stored_on_the_case(stack):
    chat = Chat(stack)
    chat.say("I want to talk to a person")
    option = json.dumps({"handoff_option": "message"})
    assert "What would you like our team to know?" in chat.say_text(f"/request_human{option}")
    answer = chat.say_text("My router is still broken, please call me after 6pm")
    case = queries.open_case_for(chat.sender)
    assert f"your message is with our team (case {case.id})" in answer
    assert case.customer_message == "My router is still broken, please call me after 6pm"
    assert "Threadline" in chat.say_text("hi")  # the bot carries on as usual
