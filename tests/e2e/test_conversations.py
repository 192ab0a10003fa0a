"""Whole conversations over HTTP against the real rasa server and action server."""
import datetime as dt
import uuid

import pytest
import requests

from threadline.db import queries

pytestmark = [pytest.mark.e2e, pytest.mark.services]


class Chat:
    """One customer talking to the bot through rasa's REST channel."""

    def __init__(self, stack, sender=None):
        self.url = f"{stack.rasa_url}/webhooks/rest/webhook"
        self.sender = sender or f"e2e-{uuid.uuid4().hex[:10]}"

    def say(self, text):
        reply = requests.post(self.url, json={"sender": self.sender, "message": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def say_text(self, text):
        return " ".join(m.get("text", "") for m in self.say(text))


def open_day(days_ahead):
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    while day.weekday() == 6:
        day += dt.timedelta(days=1)
    return day


def test_order_status_with_a_correction(stack):
    chat = Chat(stack)
    greeting = chat.say("hi")
    assert "Threadline" in greeting[0]["text"]
    assert [b["title"] for b in greeting[0]["buttons"]][0] == "Track an order"
    assert "order number" in chat.say_text("where is my order?")
    assert "couldn't find order 999999" in chat.say_text("999999")
    answer = chat.say_text("it's 482913")
    assert "Order 482913 is **on its way**" in answer and "UPS" in answer
    # The number is remembered: asking for the address needs step-up, not the number again.
    assert "postal code" in chat.say_text("what address is it going to?")
    assert "221 Mission Street" in chat.say_text("94105")


def test_booking_with_a_corrected_time_writes_one_appointment(stack):
    chat = Chat(stack)
    day = open_day(10)
    first = chat.say_text(f"I'd like to book a repair on {day:%B} {day.day} at 10am")
    assert "email" in first.lower()
    confirm = chat.say("jane@example.com")
    assert "Shall I book a repair appointment" in confirm[0]["text"]
    assert [b["payload"] for b in confirm[0]["buttons"]] == ["/affirm", "/deny"]
    assert "another time" in chat.say_text("no")
    assert "Shall I book" in chat.say_text(f"{day:%B} {day.day} at 2pm")
    done = chat.say_text("yes")
    assert "booked" in done and "14:00" in done
    booked = queries.upcoming_appointments(chat.sender)
    assert [(a.service_type, a.starts_at.hour) for a in booked] == [("repair", 14)]


def test_cancelled_booking_and_bad_input_change_nothing(stack):
    chat = Chat(stack)
    chat.say("book an appointment")
    chat.say("installation")
    assert "stopped" in chat.say_text("never mind")
    assert queries.upcoming_appointments(chat.sender) == []
    for awkward in ["", "x" * 5000, "🙂🙂🙂", "'; DROP TABLE orders; --", "order 000000"]:
        replies = chat.say(awkward)
        assert all("Traceback" not in (m.get("text") or "") for m in replies)
    assert queries.get_order("482913") is not None


def test_troubleshooting_ends_in_feedback(stack):
    chat = Chat(stack)
    step = chat.say_text("my wifi is not working")
    assert "Step 1 of" in step
    assert "Step 2 of" in chat.say_text("no")
    assert "Was this helpful" in chat.say_text("yes that fixed it")
    assert "Thanks for your feedback" in chat.say_text("yes")
    assert queries.feedback_for(chat.sender) == [{"helpful": True, "comment": None, "topic": "troubleshooting:internet"}]


def test_store_question_in_the_middle_of_a_booking(stack):
    chat = Chat(stack)
    assert "Which service" in chat.say_text("I need an appointment")
    answer = chat.say_text("what are your opening hours?")
    assert "9:00" in answer and "Which service" in answer
