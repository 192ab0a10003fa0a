"""Understanding when a customer wants to come in, in the context of the conversation.

``parse_when(text, context=...)`` reads a date and/or a time of day from what
the customer wrote or said. The ``Context`` is what the conversation already
knows: the customer's "now" (their today, in their time zone), the day and the
time already chosen, and the appointment being moved. It decides what a
partial answer means:

* a time alone keeps the chosen day ("half past two", "at 9", "noon");
* a day alone keeps the chosen time ("the same time on Thursday");
* a bare number is an hour once a day or a time is known ("no, 11 not 10"),
  and a day of the month before ("the 10th", "11");
* "the monday after", "a day later", "the week before", "an hour later"
  count from the appointment being moved.

Who reads what: the date part goes to ``dateparser`` with the context's base
(``RELATIVE_BASE``): weekday names, "tomorrow", "in 3 days", "5 December",
"a week later", "2 days ago" (what "2 days before" is turned into). What
dateparser does not read is done here: the time of day ("at 9", "3pm",
"half past two", "quarter to 4", "ten thirty", "noon"), "next Thursday" (the
coming one), "Friday week", an ordinal day alone ("the 10th"), the words of a
longer sentence that are not about dates, and a negated value ("not 10").
"""
import calendar
import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

from dateparser.date import DateDataParser

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
}
_ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
    "thirtieth": 30,
}
_FILLERS = {"um", "umm", "uh", "uhh", "erm", "er", "hmm", "please", "pls", "plz"}
# Parts of the day, and the hour they mean for an appointment.
_PERIODS = {"morning": 9, "noon": 12, "midday": 12, "lunchtime": 12, "lunch": 13, "afternoon": 14, "evening": 17}
_WEEKDAYS = {name.lower(): index for index, name in enumerate(calendar.day_name)}
_WEEKDAYS.update({name.lower(): index for index, name in enumerate(calendar.day_abbr)})
_WEEKDAYS.update({"tues": 1, "weds": 2, "thur": 3, "thurs": 3})
_MONTHS = {name.lower(): index for index, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): index for index, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_RELATIVE_DAYS = {"today", "tomorrow", "tonight", "yesterday", "weekend"}
_UNITS = {"day", "days", "week", "weeks", "fortnight", "month", "months"}
# Words that may sit inside a date phrase without being one ("the 3rd of May").
_DATE_GLUE = {"the", "of", "on", "in", "a", "an", "next", "this", "coming", "following", "after", "before",
              "later", "earlier", "ago", "same", "from", "now", "that", "it", "then"}
_ORDINAL = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")
_NEGATIONS = ("not", "instead of", "rather than", "isn't", "wasn't", "not at", "not on")
# Words before a bare number that do not change it ("no, 11", "make it 11", "how about the 12th").
_LEADING = {"no", "nope", "yes", "yeah", "ok", "okay", "sorry", "actually", "make", "it", "at", "on", "the", "how",
            "what", "about", "i", "meant", "mean", "can", "we", "do", "could", "say", "then", "oh", "wait"}
_TIME_TOKENS = {"at", "on", "the", "am", "pm", "a.m.", "p.m.", "o'clock", "oclock", "half", "quarter", "past", "to"}

# "3pm", "at 4", "10:30", "9 o'clock", "9 in the morning"
_CLOCK = re.compile(
    r"\b(?P<at>at\s+|around\s+|about\s+|by\s+)?(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*"
    r"(?P<suffix>a\.?m\.?|p\.?m\.?|o'?clock|in the (?:morning|afternoon|evening))?(?=\W|$)"
)
# "half past 2", "quarter to 4", "20 past 3", "10 to 5"
_PAST_TO = re.compile(r"\b(?P<amount>half|quarter|5|10|20|25)(?: minutes?)? (?P<dir>past|after|to) (?P<h>\d{1,2})\b")
# British "half 2" (2:30), and "10 30" (what "ten thirty" becomes)
_HALF_HOUR = re.compile(r"\bhalf (?P<h>\d{1,2})\b(?! (?:past|to|an))")
_HOUR_MINUTES = re.compile(r"\b(?P<h>\d{1,2}) (?P<m>15|30|45|00)\b")
# "an hour later", "push it back an hour", "2 hours earlier"
_HOUR_SHIFT = re.compile(
    r"\b(?:(?P<n>an?|\d+|half an) hours?) (?P<dir>later|earlier|after|before)\b"
    r"|\b(?P<dir2>back|forward)(?: by)? (?P<n2>an?|\d+|half an) hours?\b"
)


@dataclass(frozen=True)
class Context:
    """What the conversation knows when a reply is read.

    ``now`` is the customer's now (naive, their wall clock); ``date`` and
    ``time`` are what was already chosen; ``anchor`` is the start of the
    appointment being moved.
    """

    now: dt.datetime
    date: Optional[dt.date] = None
    time: Optional[dt.time] = None
    anchor: Optional[dt.datetime] = None


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

    @property
    def empty(self) -> bool:
        """Whether nothing at all was understood."""
        return self.date is None and self.time is None


def _words_to_numbers(text: str) -> str:
    tokens = re.findall(r"[\w'.:@-]+|[^\w\s]", text)
    out: List[str] = []
    for index, token in enumerate(tokens):
        value = _NUMBER_WORDS.get(token)
        if value is not None:
            # "forty five" -> 45, "twenty one" -> 21
            if out and out[-1].isdigit() and int(out[-1]) in (20, 30, 40, 50) and value < 10:
                out[-1] = str(int(out[-1]) + value)
                continue
            out.append(str(value))
            continue
        ordinal = _ORDINAL_WORDS.get(token)
        previous = tokens[index - 1] if index else ""
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if ordinal and (previous == "the" or following == "of" or (out and out[-1] in ("20", "30"))):
            if out and out[-1].isdigit() and int(out[-1]) in (20, 30):
                out[-1] = f"{int(out[-1]) + ordinal}th"  # "twenty first"
            else:
                out.append(f"{ordinal}th")
            continue
        out.append(token)
    return " ".join(out)


def _normalise(text: str) -> str:
    text = text.lower().strip()
    text = text.replace("o' clock", "o'clock").replace("o clock", "o'clock")
    text = re.sub(r"(\d)\s*(a|p)\s*\.?\s*m\b\.?", r"\1\2m", text)  # "3 p.m." -> "3pm"
    text = _words_to_numbers(text)
    text = " ".join(word for word in text.split() if word.strip(",.!?") not in _FILLERS)
    # "this afternoon" and "tonight" are today
    text = re.sub(r"\bthis (morning|afternoon|evening)\b", r"today \1", text)
    text = re.sub(r"\btonight\b", "today evening", text)
    return re.sub(r"\s+", " ", text).strip()


def _drop_negated(text: str) -> str:
    """Without what the customer says it is not: "11 not 10" -> "11", "not thursday, friday" -> "friday"."""
    for negation in sorted(_NEGATIONS, key=len, reverse=True):
        pattern = re.compile(rf"\b{re.escape(negation)}\b((?:\s+[\w:']+){{1,3}})")
        while True:
            match = pattern.search(text)
            if not match:
                break
            words = match.group(1).split()
            dropped = 0
            for word in words:
                bare = word.strip(",.!?")
                if dropped < 3 and (_is_date_word(bare) or bare in _TIME_TOKENS or bare.rstrip("apm").isdigit()
                                    or bare in _PERIODS or _CLOCK.fullmatch(bare)):
                    dropped += 1
                    if word != bare:  # a comma ends the negated part
                        break
                    continue
                break
            rest = words[dropped:]
            text = (text[: match.start()] + " " + " ".join(rest) + text[match.end():]).strip()
            if not dropped:
                break
    return re.sub(r"\s+", " ", text).strip(" ,")


def _is_date_word(word: str) -> bool:
    return (word in _WEEKDAYS or word in _MONTHS or word in _RELATIVE_DAYS or word in _UNITS
            or bool(_ORDINAL.match(word)))


def _hour(hour: int, suffix: Optional[str]) -> Optional[int]:
    if suffix and suffix.startswith("p") or suffix in ("in the afternoon", "in the evening"):
        hour = hour + 12 if hour < 12 else hour
    elif suffix and suffix.startswith("a") or suffix == "in the morning":
        hour = 0 if hour == 12 else hour
    elif 1 <= hour <= 7:
        hour += 12  # "at 4" during business hours is the afternoon
    return hour if 0 <= hour <= 23 else None


def _cut(text: str, start: int, end: int) -> str:
    return re.sub(r"\s+", " ", text[:start] + " " + text[end:]).strip()


def _reference(context: Context) -> Optional[dt.datetime]:
    """What "later", "the day after" or "an hour earlier" count from: the appointment being moved, or the choice so far."""
    if context.anchor:
        return context.anchor
    if context.date:
        return dt.datetime.combine(context.date, context.time or dt.time(12))
    return None


def _parse_time(text: str, context: Context) -> Tuple[Optional[dt.time], str]:
    """(time, text without it) or (None, text)."""
    reference = _reference(context)
    shift = _HOUR_SHIFT.search(text)
    if shift and reference and (context.anchor or context.time):
        amount = shift.group("n") or shift.group("n2")
        direction = shift.group("dir") or shift.group("dir2")
        minutes = 30 if amount == "half an" else 60 * (1 if amount in ("a", "an") else int(amount))
        sign = 1 if direction in ("later", "after", "back") else -1
        moved = reference + dt.timedelta(minutes=sign * minutes)
        return moved.time(), _cut(text, shift.start(), shift.end()) + " same day"
    match = _PAST_TO.search(text)
    if match:
        amount = {"half": 30, "quarter": 15}.get(match.group("amount")) or int(match.group("amount"))
        hour = int(match.group("h"))
        rest = text[match.end():]
        suffix = re.match(r"\s*(am|pm|in the (?:morning|afternoon|evening))\b", rest)
        end = match.end() + (suffix.end() if suffix else 0)
        hour = _hour(hour, suffix.group(1) if suffix else None)
        if hour is not None and amount < 60:
            when = dt.datetime.combine(dt.date.today(), dt.time(hour))
            when += dt.timedelta(minutes=amount if match.group("dir") in ("past", "after") else -amount)
            return when.time(), _cut(text, match.start(), end)
    for pattern in (_HALF_HOUR, _HOUR_MINUTES):
        match = pattern.search(text)
        if match:
            rest = text[match.end():]
            suffix = re.match(r"\s*(am|pm)\b", rest)
            hour = _hour(int(match.group("h")), suffix.group(1) if suffix else None)
            minute = 30 if pattern is _HALF_HOUR else int(match.group("m"))
            if hour is not None and 1 <= int(match.group("h")) <= 12:
                return dt.time(hour, minute), _cut(text, match.start(), match.end() + (suffix.end() if suffix else 0))
    for match in _CLOCK.finditer(text):
        hour, minute, suffix = int(match.group("h")), int(match.group("m") or 0), match.group("suffix")
        if not (suffix or match.group("at") or match.group("m")):
            continue  # a bare number: the caller decides with the context
        if match.group("m") and match.group(0).count(".") and not suffix and not match.group("at"):
            continue  # "5.12" is more likely a date than a time
        hour = _hour(hour, suffix)
        if hour is None or minute > 59:
            continue
        return dt.time(hour, minute), _cut(text, match.start(), match.end())
    for word, hour in _PERIODS.items():
        found = re.search(rf"\b(?:after |before |around |at |in the )?{word}(?:time)?\b", text)
        if found:
            if found.group(0).startswith("before") and hour > 9:
                hour -= 1
            return dt.time(hour), _cut(text, found.start(), found.end())
    return None, text


def _tokens(text: str) -> List[str]:
    return [t for t in re.split(r"[\s,;!?]+", text) if t]


def _date_runs(tokens: List[str]) -> List[List[str]]:
    """Runs of date words in a sentence ("i need to move it to the monday after" -> [["the", "monday", "after"]])."""
    runs: List[List[str]] = []
    current: List[str] = []
    for token in tokens + [""]:
        bare = token.strip(".")
        if bare and (_is_date_word(bare) or bare in _DATE_GLUE or bare.isdigit()):
            current.append(bare)
            continue
        while current and current[-1] in ("the", "of", "on", "in", "a", "an", "from", "that", "it", "then"):
            current.pop()
        while current and current[0] in ("of", "on", "from", "that", "it", "then"):
            current.pop(0)
        if any(_is_core(word, current) for word in current):
            runs.append(current)
        current = []
    return runs


def _is_core(word: str, run: List[str]) -> bool:
    if word in _WEEKDAYS or word in _RELATIVE_DAYS or _ORDINAL.match(word):
        return True
    if word in _MONTHS:  # "may" and "march" are verbs too: a month needs a day number beside it
        index = run.index(word)
        around = run[max(0, index - 2): index + 3]
        return any(w.isdigit() or _ORDINAL.match(w) for w in around)
    if word in _UNITS:
        return any(w in run for w in ("next", "this", "in", "after", "before", "later", "earlier", "ago", "a", "an",
                                      "following", "coming")) or any(w.isdigit() for w in run)
    return False


def _dateparser(text: str, base: dt.datetime, prefer: str = "future") -> Optional[dt.date]:
    parser = DateDataParser(languages=["en"], settings={
        "PREFER_DATES_FROM": prefer, "RELATIVE_BASE": base, "PREFER_DAY_OF_MONTH": "first",
    })
    try:
        found = parser.get_date_data(text).date_obj
    except (ValueError, OverflowError):
        return None
    return found.date() if found else None


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


def _relative(run: List[str], reference: dt.datetime) -> Optional[dt.date]:
    """"the monday after", "a day later", "the week before", "same day", "next week": counted from ``reference``."""
    words = set(run)
    if "same" in words and ("day" in words or len(words) == 1):
        return reference.date()
    if [w for w in run if w not in ("the", "a")] in (["next", "week"], ["week", "after"], ["following", "week"]):
        return reference.date() + dt.timedelta(days=7)
    later = bool(words & {"after", "later", "following"})
    earlier = bool(words & {"before", "earlier"})
    if not (later or earlier) or "tomorrow" in words:
        return None
    weekdays = [w for w in run if w in _WEEKDAYS]
    if weekdays:
        return _dateparser(weekdays[0], reference, "future" if later else "past")
    numbers = [int(w) for w in run if w.isdigit()]
    count = numbers[0] if numbers else 1
    unit = next((w for w in run if w in _UNITS), "day")
    if unit == "fortnight":
        count, unit = 2 * count, "weeks"
    unit = unit.rstrip("s") + ("s" if count != 1 else "")
    phrase = f"in {count} {unit}" if later else f"{count} {unit} ago"
    return _dateparser(phrase, reference)


def _weekday(words: List[str], today: dt.date, reference: Optional[dt.date] = None) -> dt.date:
    """"friday", "next friday", "this friday" (the coming one), "friday next week", "friday week".

    A weekday alone once a day is chosen (or an appointment is being moved)
    is that weekday in the same week ("make it Thursday instead"), unless
    that day has passed.
    """
    index = _WEEKDAYS[[w for w in words if w in _WEEKDAYS][-1]]
    coming = today + dt.timedelta(days=(index - today.weekday()) % 7 or 7)
    if reference and not set(words) & {"next", "this", "coming", "week"}:
        same_week = reference - dt.timedelta(days=reference.weekday()) + dt.timedelta(days=index)
        if same_week > today:
            return same_week
    if "week" in words and "next" in words:
        monday_next_week = today + dt.timedelta(days=7 - today.weekday())
        return monday_next_week + dt.timedelta(days=index)
    if words[-1] == "week":  # British "Friday week": a week on Friday
        return coming + dt.timedelta(days=7)
    return coming


def _parse_date(text: str, context: Context) -> Optional[dt.date]:
    runs = _date_runs(_tokens(text))
    if not runs:
        return None
    run = runs[-1]  # "move my friday appointment to next tuesday": the new value comes last
    today = context.now.date()
    reference = _reference(context)
    if reference:
        relative = _relative(run, reference)
        if relative:
            return relative
    words = [w for w in run if w not in ("on", "the", "of")]
    if words and words[0] == "in" and not any(w in _UNITS for w in words):
        words = words[1:]  # "come in on the 5th"
    phrase = " ".join(words)
    if "day after tomorrow" in phrase:
        return today + dt.timedelta(days=2)
    has_month = any(w in _MONTHS for w in words)
    if any(w in _WEEKDAYS for w in words) and not has_month and not any(_ORDINAL.match(w) for w in words):
        return _weekday(words, today, reference.date() if reference else None)
    if "weekend" in words:
        return today + dt.timedelta(days=(5 - today.weekday()) % 7 or 7)
    ordinals = [w for w in words if _ORDINAL.match(w)]
    if len(words) == 1 and (ordinals or words[0].isdigit()):
        day = int(_ORDINAL.match(words[0]).group(1)) if ordinals else int(words[0])
        return _next_day_of_month(today, day) if 1 <= day <= 31 else None
    phrase = " ".join(_ORDINAL.sub(r"\1", w) for w in words)
    return _dateparser(phrase, dt.datetime.combine(today, dt.time(12)))


def parse_when(text: str, now: Optional[dt.datetime] = None, context: Optional[Context] = None) -> When:
    """Read a date and/or a time of day from free text, in the conversation's context."""
    if context is None:
        context = Context(now=now or dt.datetime.now())
    elif now is not None:
        context = replace(context, now=now)
    normalised = _drop_negated(_normalise(text))
    time, rest = _parse_time(normalised, context)
    date = _parse_date(rest, context)
    if date is None and time is None:
        words = re.sub(r"[,.!?]", " ", rest).split()
        while words and words[0] in _LEADING:
            words.pop(0)
        bare = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", " ".join(words))
        if bare:
            number = int(bare.group(1))
            if not bare.group(2) and (context.date or context.time) and _hour(number, None) is not None:
                time = dt.time(_hour(number, None))
            elif 1 <= number <= 31:
                date = _next_day_of_month(context.now.date(), number)
    return When(date=date, time=time)


def resolve(reading: When, context: Context) -> When:
    """Fill what a partial answer left out from what the conversation already chose."""
    date = reading.date
    time = reading.time
    if date is None and time is not None:
        date = context.date or (context.anchor.date() if context.anchor else None)
    if time is None and date is not None:
        time = context.time or (context.anchor.time() if context.anchor else None)
    return When(date=date, time=time)
