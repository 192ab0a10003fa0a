"""Understanding appointment times like "next Tuesday at 3pm" or "friday 2 pm".

The time of day is read with explicit rules (so "at 10" means 10:00, and a bare
"at 4" in business hours means 16:00); the date part goes to ``dateparser``,
which handles "tomorrow", "in 3 days", "December 5th" and weekdays.
"""
import datetime as dt
import re
from dataclasses import dataclass
from typing import Optional

import dateparser

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}
_PERIODS = {"morning": 9, "noon": 12, "midday": 12, "afternoon": 14, "evening": 17}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_TIME_RE = re.compile(
    r"\b(?:at\s+)?(\d{1,2})(?:[:.](\d{2}))?\s*(a\.?m\.?|p\.?m\.?|o'?clock)?(?=\W|$)"
)


@dataclass(frozen=True)
class When:
    """A parsed expression: a date, a time of day, or both."""

    date: Optional[dt.date]
    time: Optional[dt.time]

    def combine(self) -> Optional[dt.datetime]:
        """The full datetime when both parts are known."""
        if self.date and self.time:
            return dt.datetime.combine(self.date, self.time)
        return None


def _normalise(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"\b(um+|uh+|erm|like|please|pls)\b", " ", text)
    for word, number in _NUMBER_WORDS.items():
        text = re.sub(rf"\b{word}\b", str(number), text)
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    return re.sub(r"\s+", " ", text)


def _parse_time(text: str):
    """(time, text without the time) or (None, text)."""
    for match in _TIME_RE.finditer(text):
        hour, minute, suffix = int(match.group(1)), int(match.group(2) or 0), match.group(3)
        has_at = match.group(0).startswith("at")
        if not (suffix or has_at or match.group(2)):
            continue  # a bare number is a day of month, not a time
        if suffix and suffix.startswith("p") and hour < 12:
            hour += 12
        elif suffix and suffix.startswith("a") and hour == 12:
            hour = 0
        elif not suffix or suffix.startswith("o"):
            if 1 <= hour <= 7:
                hour += 12  # "at 4" during business hours is the afternoon
        if hour > 23 or minute > 59:
            continue
        rest = (text[: match.start()] + " " + text[match.end():]).strip()
        return dt.time(hour, minute), rest
    for word, hour in _PERIODS.items():
        if re.search(rf"\b{word}\b", text):
            return dt.time(hour), re.sub(rf"\b(in the |this )?{word}\b", " ", text).strip()
    return None, text


def _parse_date(text: str, now: dt.datetime) -> Optional[dt.date]:
    text = re.sub(r"\b(on|the|at|for|of|book|appointment|please|make it|how about|what about)\b", " ", text)
    text = re.sub(r"\s+", " ", text).strip(" ,.")
    if not text:
        return None
    today = now.date()
    if re.search(r"\bday after tomorrow\b", text):
        return today + dt.timedelta(days=2)
    if re.search(r"\btomorrow\b", text):
        return today + dt.timedelta(days=1)
    if re.search(r"\btoday\b|\btonight\b", text):
        return today
    for index, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name[:3]}(?:{name[3:]})?\b", text):
            ahead = (index - today.weekday()) % 7 or 7
            if re.search(r"\bnext week\b", text):
                ahead += 7
            return today + dt.timedelta(days=ahead)
    if re.fullmatch(r"\d{1,2}", text) and 1 <= int(text) <= 31:
        return _next_day_of_month(today, int(text))
    parsed = dateparser.parse(
        text,
        settings={"PREFER_DATES_FROM": "future", "RELATIVE_BASE": now, "PREFER_DAY_OF_MONTH": "first"},
    )
    return parsed.date() if parsed else None


def _next_day_of_month(today: dt.date, day: int) -> Optional[dt.date]:
    year, month = today.year, today.month
    for _ in range(3):
        try:
            candidate = dt.date(year, month, day)
        except ValueError:
            candidate = None
        if candidate and candidate >= today:
            return candidate
        month, year = (1, year + 1) if month == 12 else (month + 1, year)
    return None


def parse_when(text: str, now: Optional[dt.datetime] = None) -> When:
    """Read a date and/or a time of day from free text."""
    now = now or dt.datetime.now()
    normalised = _normalise(text)
    time, rest = _parse_time(normalised)
    return When(date=_parse_date(rest, now), time=time)
