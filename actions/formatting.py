"""Channel-neutral wording of dates and times (output channels do the rest)."""
import datetime as dt


def say_datetime(value: dt.datetime) -> str:
    """"Tuesday 24 November at 15:00"."""
    return f"{value:%A} {value.day} {value:%B} at {value:%H:%M}"


def say_date(value: dt.date) -> str:
    """"Tuesday 24 November"."""
    return f"{value:%A} {value.day} {value:%B}"
