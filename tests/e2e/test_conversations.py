"""Whole conversations over HTTP against the real rasa server and action server."""
import datetime as dt

import requests

import pytest

from tests.support.web import Chat
from threadline.db import queries

pytestmark = [pytest.mark.e2e, pytest.mark.services]


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
    # An anonymous visitor hears the status; the tracking details need the order's postal code.
    assert "Order 482913 is **on its way**" in answer and "UPS" not in answer and "postal code" in answer
    details = chat.say_text("94105")
    assert "UPS" in details and "1Z999AA10123456784" in details
    # The number and the step-up are remembered: the address needs neither again.
    assert "221 Mission Street" in chat.say_text("what address is it going to?")


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
    booked = queries.upcoming_appointments(chat.customer_id)
    assert [(a.service_type, a.starts_at.hour) for a in booked] == [("repair", 14)]


def test_cancelled_booking_and_bad_input_change_nothing(stack):
    chat = Chat(stack)
    chat.say("book an appointment")
    chat.say("installation")
    assert "stopped" in chat.say_text("never mind")
    assert queries.upcoming_appointments(chat.customer_id) == []
    for awkward in ["", "x" * 5000]:  # refused by the web chat, saying why
        refused = requests.post(chat.base + "/webhook", json={"sender": chat.sender, "message": awkward}, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]
    for awkward in ["x" * 4000, "🙂🙂🙂", "'; DROP TABLE orders; --", "order 000000"]:
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
    assert queries.feedback_for(chat.customer_id) == [{"helpful": True, "comment": None, "topic": "troubleshooting:internet"}]


def test_store_question_in_the_middle_of_a_booking(stack):
    chat = Chat(stack)
    assert "Which service" in chat.say_text("I need an appointment")
    answer = chat.say_text("what are your opening hours?")
    assert "9:00" in answer and "Which service" in answer


def test_moving_to_another_channel_inside_a_booking_never_becomes_its_time(stack):
    chat = Chat(stack)
    assert "Which service" in chat.say_text("I need an appointment")
    assert "When would you like" in chat.say_text("a repair please")
    for digression in ("Can I continue this on WhatsApp?", "/link_channel"):  # typed, and the widget's button
        answer = chat.say_text(digression)
        assert "LINK" in answer, answer
        assert "couldn't work out a date" not in answer
    day = open_day(15)  # a time no other test books
    assert "email" in chat.say_text(f"{day:%B} {day.day} at 4pm").lower()  # the booking goes on
