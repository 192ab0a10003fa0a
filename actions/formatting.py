"""Channel-neutral wording of dates, times and noun phrases (output channels do the rest).

The style these follow is in the README ("How the bot speaks"): days as
"Tuesday 24 November", times on the 24-hour clock ("15:00"), and the article
chosen for the word it stands before ("an installation", "a repair"), never
written before a variable in a response.
"""
import datetime as dt


def say_datetime(value: dt.datetime) -> str:
    """"Tuesday 24 November at 15:00"."""
    return f"{value:%A} {value.day} {value:%B} at {value:%H:%M}"


def say_date(value: dt.date) -> str:
    """"Tuesday 24 November"."""
    return f"{value:%A} {value.day} {value:%B}"


def say_time(value: dt.time) -> str:
    """"15:00"."""
    return f"{value:%H:%M}"


# Words whose first letter's sound differs from how it is written.
_AN_EXCEPTIONS = ("hour", "honest", "honour", "heir")
_A_EXCEPTIONS = ("one", "once", "uni", "use", "usu", "eu", "ewe", "ufo")


def article(word: str) -> str:
    """"an" or "a" for ``word`` ("an installation", "a repair", "an hour", "a user")."""
    lowered = (word or "").strip().lower()
    if lowered.startswith(_AN_EXCEPTIONS):
        return "an"
    if lowered.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if lowered[:1] in ("a", "e", "i", "o", "u") else "a"


def with_article(word: str) -> str:
    """``word`` with its indefinite article: "an installation"."""
    return f"{article(word)} {word}"


def say_datetime_safely(value: object) -> str:
    """:func:`say_datetime` of an ISO date-time slot value; empty when it is not one."""
    try:
        return say_datetime(dt.datetime.fromisoformat(str(value))) if value else ""
    except ValueError:
        return ""
