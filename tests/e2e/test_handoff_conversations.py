"""Every escalation trigger in a real conversation (rasa REST channel, trained model, action server)."""
import pytest

from tests.support.web import Chat
from threadline.db import cases

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def handoff_payload(messages):
    return [m["custom"]["handoff"] for m in messages if (m.get("custom") or {}).get("handoff")]


def test_asking_for_a_person_opens_a_case_and_tells_a_voice_connector_to_transfer(stack):
    chat = Chat(stack)
    chat.say("where is my order 482913")
    messages = chat.say("I want to talk to a person")
    assert "connecting you with a member of our team" in " ".join(m.get("text", "") for m in messages)
    case = cases.open_case_for(chat.customer_id)
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
    case = cases.open_case_for(chat.customer_id)
    assert (case.reason, case.queue) == ("troubleshooting_unresolved", "technical")


def test_two_fallbacks_in_a_row_bring_in_a_person(stack):
    chat = Chat(stack)
    # What customers type when the bot is lost (typed "/intents" reach no channel as intents any more).
    first = chat.say("ok so like the thing")
    assert "another way" in first[0]["text"] or "not sure I understood" in first[0]["text"], first
    answers = [first]
    for _ in range(3):  # a clarification, then the customer stays unclear: a person comes in
        offered = [b for m in answers[-1] for b in m.get("buttons") or [] if b["title"] == "Something else"]
        answers.append(chat.say(offered[0]["payload"] if offered else "ok so like the thing"))
        if "I'm not getting this right" in " ".join(m.get("text", "") for m in answers[-1]):
            break
    assert "I'm not getting this right" in " ".join(m.get("text", "") for m in answers[-1]), answers
    assert cases.open_case_for(chat.customer_id).reason == "repeated_fallback"
    assert "Threadline" in chat.say_text("hi")  # and the bot carries on


def test_a_frustrated_customer_is_offered_a_person_without_asking(stack):
    chat = Chat(stack)
    chat.say("this is useless")
    assert cases.open_case_for(chat.customer_id) is None
    answer = chat.say("worst service ever, I am so angry!!!")
    assert "I'm sorry this has been frustrating" in answer[0]["text"]  # first, then the usual answer
    assert len([m for m in answer if m.get("text")]) >= 2, answer
    case = cases.open_case_for(chat.customer_id)
    assert case.reason == "frustration" and case.context["sentiment"]["cues"]


def test_a_message_for_the_team_is_stored_on_the_case(stack):
    chat = Chat(stack)
    chat.say("I want to talk to a person")
    waiting = chat.say("can I talk to someone please")
    leave = [b["payload"] for m in waiting for b in m.get("buttons") or [] if b["title"] == "Leave a message"]
    assert leave, waiting
    assert "What would you like our team to know?" in chat.say_text(leave[0])  # a button the bot offered
    answer = chat.say_text("My router is still broken, please call me after 6pm")
    case = cases.open_case_for(chat.customer_id)
    assert f"your message is with our team (case {case.id})" in answer
    assert case.customer_message == "My router is still broken, please call me after 6pm"
    assert "What can I do for you" in chat.say_text("hi")  # the bot carries on as usual
