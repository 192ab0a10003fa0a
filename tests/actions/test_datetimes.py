"""Reading a date and a time the way customers give them, in the conversation's context."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from actions.context import customer_now, customer_timezone
from actions.datetimes import Context, parse_when, resolve
from tests.actions.helpers import make_tracker

NOW = dt.datetime(2026, 12, 1, 12, 0)  # a Tuesday
WEDNESDAY = dt.date(2026, 12, 2)
FRIDAY_10 = dt.datetime(2026, 12, 4, 10, 0)


def read(text, **context):
    ctx = Context(now=NOW, **context)
    return resolve(parse_when(text, context=ctx), ctx)


@pytest.mark.parametrize("text,hour,minute", [
    ("half past two", 14, 30), ("at 9", 9, 0), ("noon", 12, 0), ("at noon please", 12, 0),
    ("quarter to four", 15, 45), ("quarter past 10", 10, 15), ("ten thirty", 10, 30), ("three o'clock", 15, 0),
    ("9 in the morning", 9, 0), ("twenty past three", 15, 20), ("half two", 14, 30), ("um 2", 14, 0),
    ("3 p.m.", 15, 0), ("11am", 11, 0),
])
def test_a_time_alone_keeps_the_day_already_chosen(text, hour, minute):
    assert read(text, date=WEDNESDAY).combine() == dt.datetime.combine(WEDNESDAY, dt.time(hour, minute))


@pytest.mark.parametrize("text,day", [
    ("the 10th", dt.date(2026, 12, 10)), ("the same time on Thursday", dt.date(2026, 12, 3)),
    ("make it thursday instead", dt.date(2026, 12, 3)), ("what about saturday", dt.date(2026, 12, 5)),
    ("the twenty first", dt.date(2026, 12, 21)), ("tomorrow", dt.date(2026, 12, 2)),
    ("in 3 days", dt.date(2026, 12, 4)), ("december 11th", dt.date(2026, 12, 11)),
])
def test_a_day_alone_keeps_the_time_already_chosen(text, day):
    assert read(text, date=WEDNESDAY, time=dt.time(15)).combine() == dt.datetime.combine(day, dt.time(15))


@pytest.mark.parametrize("text,expected", [
    ("no, 11 not 10", dt.time(11)), ("not 10, 11", dt.time(11)), ("actually make it 11am", dt.time(11)),
    ("sorry, 4pm not 3", dt.time(16)),
])
def test_a_corrected_value_is_the_one_not_negated(text, expected):
    assert read(text, date=WEDNESDAY, time=dt.time(10)).time == expected


def test_a_negated_day_is_dropped():
    assert read("not thursday, friday", date=dt.date(2026, 12, 3), time=dt.time(10)).date == dt.date(2026, 12, 4)


@pytest.mark.parametrize("text,expected", [
    ("I need to move my appointment to the monday after at 2pm", dt.datetime(2026, 12, 7, 14)),
    ("a day later", dt.datetime(2026, 12, 5, 10)),
    ("the day before", dt.datetime(2026, 12, 3, 10)),
    ("the week after", dt.datetime(2026, 12, 11, 10)),
    ("same time next week", dt.datetime(2026, 12, 11, 10)),
    ("push it back an hour", dt.datetime(2026, 12, 4, 11)),
    ("an hour earlier", dt.datetime(2026, 12, 4, 9)),
    ("move my friday appointment to next tuesday", dt.datetime(2026, 12, 8, 10)),
])
def test_relative_dates_count_from_the_appointment_being_moved(text, expected):
    assert read(text, anchor=FRIDAY_10).combine() == expected


@pytest.mark.parametrize("text,expected", [
    ("next tuesday at 3pm", dt.datetime(2026, 12, 8, 15)),  # the coming Tuesday (today is one)
    ("friday week", dt.date(2026, 12, 11)),
    ("monday next week", dt.date(2026, 12, 7)),
    ("tomorrow morning", dt.datetime(2026, 12, 2, 9)),
    ("this afternoon", dt.datetime(2026, 12, 1, 14)),
    ("day after tomorrow at 10", dt.datetime(2026, 12, 3, 10)),
    ("the second of january at 9am", dt.datetime(2027, 1, 2, 9)),
    ("I'd like to book a repair on December 11 at 10am", dt.datetime(2026, 12, 11, 10)),
    ("I may come in on the 5th", dt.date(2026, 12, 5)),
])
def test_whole_expressions_without_context(text, expected):
    when = parse_when(text, context=Context(now=NOW))
    got = when.combine() if isinstance(expected, dt.datetime) else when.date
    assert got == expected


def test_a_bare_number_is_a_day_until_a_day_or_time_is_known():
    assert parse_when("11", context=Context(now=NOW)).date == dt.date(2026, 12, 11)
    assert parse_when("11", context=Context(now=NOW, date=WEDNESDAY)).time == dt.time(11)


@pytest.mark.parametrize("text", ["jane@example.com", "482913", "94105", "yes", "no", "I need a repair", "may I"])
def test_what_is_no_date_is_not_read_as_one(text):
    assert parse_when(text, context=Context(now=NOW)).empty


def test_the_customers_time_zone_decides_what_today_is():
    zone = "Pacific/Kiritimati"  # UTC+14: often already tomorrow
    tracker = make_tracker(metadata={"client_metadata": {"timezone": zone}})
    assert customer_timezone(tracker) == ZoneInfo(zone)
    assert customer_now(tracker).date() == dt.datetime.now(ZoneInfo(zone)).date()
    tomorrow = parse_when("tomorrow", context=Context(now=customer_now(tracker))).date
    assert tomorrow == dt.datetime.now(ZoneInfo(zone)).date() + dt.timedelta(days=1)


def test_an_unknown_time_zone_is_the_stores():
    tracker = make_tracker(metadata={"client_metadata": {"timezone": "Mars/Olympus_Mons"}})
    assert customer_timezone(tracker) is None
    assert abs((customer_now(tracker) - dt.datetime.now()).total_seconds()) < 60
