"""The bot's written style (README, "How the bot speaks"), checked on every response and action."""
import re
from pathlib import Path

import pytest
import yaml

from actions.formatting import article, with_article

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
TEXTS = {
    name: variant.get("text", "")
    for name, variants in DOMAIN["responses"].items()
    for variant in variants
}
ACTIONS = {path.name: path.read_text() for path in (ROOT / "actions").glob("*.py")}
# Words whose article goes by sound, not spelling.
SOUND_EXCEPTIONS = {"one", "user", "unit", "uni", "use", "usual", "hour", "honest", "eu"}


def test_no_article_is_written_before_a_variable():
    for name, text in TEXTS.items():
        assert not re.search(r"\b(a|an)\s+\{", text, re.I), f"{name}: pass the noun with its article ({text!r})"
    for file, source in ACTIONS.items():
        assert not re.search(r"\b(a|an) \{", source), f"actions/{file}: an article before a variable"


def test_literal_articles_match_the_word_after_them():
    for name, text in TEXTS.items():
        for art, word in re.findall(r"\b(a|an) ([A-Za-z]+)", text):
            if word.lower() in SOUND_EXCEPTIONS:
                continue
            assert art.lower() == article(word), f"{name}: {art!r} {word!r}"


@pytest.mark.parametrize("word,expected", [
    ("installation", "an installation"), ("repair", "a repair"), ("consultation", "a consultation"),
    ("hour", "an hour"), ("user", "a user"), ("appointment", "an appointment"), ("one", "a one"),
])
def test_with_article(word, expected):
    assert with_article(word) == expected


def test_questions_end_the_message_they_are_in():
    # One question per message, and it comes last: nothing is said after it.
    for name, text in TEXTS.items():
        plain = re.sub(r"\{[^}]*\}", "X", text)
        if "?" in plain and not name.startswith("utter_ask_faq"):
            assert plain.rstrip().endswith(("?", '?"')) or name in ALLOWED_TRAILING, f"{name}: {text!r}"


# Prompts that ask, then say briefly what the answer may look like.
ALLOWED_TRAILING = {
    "utter_ask_appointment_time", "utter_ask_time_on_date", "utter_ask_day_for_time", "utter_ask_order_number",
    "utter_ask_appointment_ref", "utter_confirm_booking", "utter_handoff_already_open", "utter_handoff_queue_full",
    "utter_handoff_outside_hours", "utter_ask_handoff_message", "utter_ask_handoff_callback", "utter_iamabot",
    "utter_greet", "utter_default", "utter_ask_affirmation",
}


def test_no_gesture_or_channel_is_named():
    # Buttons are rendered by each channel (spoken choices on a call): never "click", "tap" or "type".
    for name, text in TEXTS.items():
        assert not re.search(r"\b(click|tap|type|swipe|scroll)\b", text, re.I), f"{name}: {text!r}"


def test_times_are_said_on_the_24_hour_clock():
    from actions.formatting import say_datetime
    import datetime as dt

    assert say_datetime(dt.datetime(2026, 12, 2, 14, 0)) == "Wednesday 2 December at 14:00"
