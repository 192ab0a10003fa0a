"""Booking, rescheduling and cancelling against real availability."""
import datetime as dt

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.appointments import (
    ActionBookAppointment,
    ActionCancelAppointment,
    ActionRescheduleAppointment,
    ValidateAppointmentForm,
    ValidateAppointmentRescheduleForm,
)
from actions.datetimes import parse_when
from threadline.db import queries
from tests.actions.helpers import make_tracker, responses, slot_events

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]


def next_open_day(days_ahead: int = 3) -> dt.date:
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    while day.weekday() == 6:
        day += dt.timedelta(days=1)
    return day


@pytest.mark.parametrize(
    "text,weekday,hour",
    [("next tuesday at 3pm", 1, 15), ("friday 2 pm", 4, 14), ("uh thursday at three pm", 3, 15),
     ("monday morning", 0, 9), ("wednesday at 10:30", 2, 10)],
)
def test_relative_dates_are_understood(text, weekday, hour):
    now = dt.datetime(2026, 11, 22, 12, 0)  # a Sunday
    when = parse_when(text, now)
    assert when.date.weekday() == weekday and when.date > now.date()
    assert when.time.hour == hour


def test_a_bare_number_is_a_day_not_a_time():
    when = parse_when("on the 5th at 11:30", dt.datetime(2026, 11, 22, 12, 0))
    assert when.date == dt.date(2026, 12, 5) and when.time == dt.time(11, 30)


async def test_free_slot_is_accepted_and_clears_an_old_confirmation():
    when = dt.datetime.combine(next_open_day(4), dt.time(11))
    tracker = make_tracker({"appointment_service": "consultation"})
    result = await ValidateAppointmentForm().validate_appointment_time(
        when.isoformat(), CollectingDispatcher(), tracker, {}
    )
    assert result["appointment_time"] == when.isoformat(timespec="minutes")
    assert result["appointment_confirmed"] is None


async def test_taken_slot_offers_free_alternatives_as_buttons():
    when = dt.datetime.combine(next_open_day(5), dt.time(10))
    queries.book_appointment("someone-else", "repair", when, "x@example.com")
    dispatcher = CollectingDispatcher()
    result = await ValidateAppointmentForm().validate_appointment_time(
        when.isoformat(), dispatcher, make_tracker({"appointment_service": "repair"}), {}
    )
    assert result["appointment_time"] is None
    assert responses(dispatcher) == ["utter_slot_taken"]
    buttons = dispatcher.messages[0]["buttons"]
    assert 1 <= len(buttons) <= 3
    for button in buttons:
        offered = dt.datetime.fromisoformat(button["payload"].split('"datetime": "')[1].rstrip('"}'))
        assert queries.is_available("repair", offered)


async def test_sunday_and_past_times_are_refused():
    sunday = dt.date.today() + dt.timedelta(days=(6 - dt.date.today().weekday()) % 7 or 7)
    dispatcher = CollectingDispatcher()
    await ValidateAppointmentForm().validate_appointment_time(
        dt.datetime.combine(sunday, dt.time(10)).isoformat(), dispatcher, make_tracker({"appointment_service": "repair"}), {}
    )
    await ValidateAppointmentForm().validate_appointment_time(
        "2001-01-01T10:00", dispatcher, make_tracker({"appointment_service": "repair"}), {}
    )
    assert responses(dispatcher) == ["utter_outside_hours", "utter_time_in_past"]


async def test_a_time_alone_corrects_the_time_on_the_chosen_day():
    chosen = dt.datetime.combine(next_open_day(6), dt.time(10))
    earlier = [{"event": "slot", "name": "appointment_time", "value": chosen.isoformat(timespec="minutes")}]
    tracker = make_tracker({"appointment_service": "installation"}, events=earlier, text="make it 4pm")
    result = await ValidateAppointmentForm().validate_appointment_time("4pm", CollectingDispatcher(), tracker, {})
    assert result["appointment_time"] == chosen.replace(hour=16).isoformat(timespec="minutes")


async def test_a_day_alone_is_kept_until_a_time_follows():
    result = await ValidateAppointmentForm().validate_appointment_time(
        "tuesday", CollectingDispatcher(), make_tracker({"appointment_service": "repair"}), {}
    )
    assert result["appointment_time"] is None and result["appointment_partial_date"]
    tracker = make_tracker({"appointment_service": "repair", "appointment_partial_date": result["appointment_partial_date"]})
    result = await ValidateAppointmentForm().validate_appointment_time("3pm", CollectingDispatcher(), tracker, {})
    assert result["appointment_time"].endswith("T15:00")


async def test_invalid_email_is_refused():
    dispatcher = CollectingDispatcher()
    result = await ValidateAppointmentForm().validate_appointment_email("jane at example", dispatcher, make_tracker(), {})
    assert result == {"appointment_email": None}
    assert responses(dispatcher) == ["utter_invalid_email"]


async def test_book_reschedule_cancel_round_trip():
    customer = "c_round_trip"
    first = dt.datetime.combine(next_open_day(8), dt.time(9))
    second = dt.datetime.combine(next_open_day(8), dt.time(14))
    slots = {"appointment_service": "repair", "appointment_time": first.isoformat(timespec="minutes"),
             "appointment_email": "jane@example.com", "appointment_confirmed": True}
    dispatcher = CollectingDispatcher()
    events = await ActionBookAppointment().run(dispatcher, make_tracker(slots, sender_id=customer), {})
    assert responses(dispatcher) == ["utter_appointment_booked"]
    ref = slot_events(events)["appointment_ref"]
    assert [a.ref for a in queries.upcoming_appointments(customer)] == [ref]
    assert not queries.is_available("repair", first)

    slots = {"appointment_time": second.isoformat(timespec="minutes"), "appointment_confirmed": True}
    dispatcher = CollectingDispatcher()
    await ActionRescheduleAppointment().run(dispatcher, make_tracker(slots, sender_id=customer), {})
    assert responses(dispatcher) == ["utter_appointment_rescheduled"]
    assert queries.upcoming_appointments(customer)[0].starts_at == second
    assert queries.is_available("repair", first)

    dispatcher = CollectingDispatcher()
    await ActionCancelAppointment().run(dispatcher, make_tracker({"appointment_confirmed": True}, sender_id=customer), {})
    assert responses(dispatcher) == ["utter_appointment_cancelled"]
    assert queries.upcoming_appointments(customer) == []


async def test_declined_confirmation_writes_nothing():
    customer = "c_declined"
    when = dt.datetime.combine(next_open_day(9), dt.time(12))
    slots = {"appointment_service": "repair", "appointment_time": when.isoformat(timespec="minutes"),
             "appointment_email": "a@example.com", "appointment_confirmed": None}
    dispatcher = CollectingDispatcher()
    events = await ActionBookAppointment().run(dispatcher, make_tracker(slots, sender_id=customer), {})
    assert queries.upcoming_appointments(customer) == []
    assert slot_events(events)["appointment_time"] is None


async def test_reschedule_form_asks_which_appointment_when_none_is_known():
    # Issue #12: a customer the bot does not know is asked for the reference (then the booking email),
    # instead of hearing "I can't find any upcoming appointments" with no way to say which one.
    slots = await ValidateAppointmentRescheduleForm().required_slots(
        ["appointment_ref", "appointment_check_email", "appointment_time", "appointment_confirmed"],
        CollectingDispatcher(), make_tracker(sender_id="c_nobody"), {}
    )
    assert slots == ["appointment_ref", "appointment_time", "appointment_confirmed"]
