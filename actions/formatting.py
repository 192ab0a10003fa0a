"""Channel-neutral wording of dates and times (output channels do the rest)."""
import datetime as dt


def say_datetime(value: dt.datetime) -> str:
    """"Tuesday 24 November at 15:00"."""
    return f"{value:%A} {value.day} {value:%B} at {value:%H:%M}"


def say_date(value: dt.date) -> str:
    """"Tuesday 24 November"."""
    return f"{value:%A} {value.day} {value:%B}"


def with_article(noun: str) -> str:
    """"an installation", "a repair": the indefinite article that fits the sound."""
    word = (noun or "").strip()
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}" if word else word


def say_datetime_safely(value: object) -> str:
    """:func:`say_datetime` of an ISO date-time slot value; empty when it is not one."""
    try:
        return say_datetime(dt.datetime.fromisoformat(str(value))) if value else ""
    except ValueError:
        return ""
