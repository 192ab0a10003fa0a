"""Frustration scoring: VADER on the customer's recent messages, plus shouting and repetition.

Pure scoring: ``actions.every_turn`` runs it after every customer message and
escalates when the customer is frustrated.

The level is a weighted sum of signals over the customer's typed messages
since the last handoff (button taps say nothing about mood):

* negativity of the latest message (VADER compound below zero; a message of
  several sentences scores as its most negative one, so "This is useless!!!
  I WANT A REFUND NOW" is not softened by its second half),
* the trend: mean compound of the last three messages, below zero, and how
  many of them are clearly negative,
* shouting: the latest message mostly in capitals, or a run of three
  capitalised words in it ("I WANT A REFUND NOW"), or "!!",
* repetition: the latest question (3+ words) sent before, nearly word for word.

One strongly negative message ("I'm so angry, this is terrible service")
crosses the threshold on its own; a mildly negative one needs company (an
earlier negative message, capitals, or a repeat). "no" to a troubleshooting
step does not.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

from rasa_sdk import Tracker

WINDOW = 5
THRESHOLD = 0.75
WEIGHT_NEGATIVE = 0.6
WEIGHT_TREND = 0.5
WEIGHT_SHOUTING = 0.4
WEIGHT_EXCLAMATION = 0.15
WEIGHT_REPEAT = 0.4
WEIGHT_PERSISTENT = 0.2
NEGATIVE = -0.35  # "no" scores -0.3: a plain no is not negative wording
_WORD = re.compile(r"[a-z0-9']+")
_analyzer = None


def _vader():
    global _analyzer
    if _analyzer is None:  # loading the lexicon takes ~50 ms; only on first use
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CAPS_WORD = re.compile(r"^[A-Z]{2,}[!?.,]*$")


def compound(text: str) -> float:
    """VADER's compound score of ``text``, from -1 (most negative) to 1: its most negative sentence."""
    analyzer = _vader()
    whole = float(analyzer.polarity_scores(text)["compound"])
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if len(sentences) < 2:
        return whole
    return min([whole] + [float(analyzer.polarity_scores(s)["compound"]) for s in sentences])


def is_shouting(text: str) -> bool:
    """Mostly capital letters, or three capitalised words in a row, in a message long enough to mean it."""
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) >= 6 and sum(ch.isupper() for ch in letters) / len(letters) >= 0.7:
        return True
    run = 0
    for word in text.split():
        if _CAPS_WORD.match(word):
            run += 1
            if run >= 3:
                return True
        elif len(word.strip("!?.,")) > 1:  # "I" and "A" neither break nor make a run
            run = 0
    return False


def _words(text: str) -> set:
    return set(_WORD.findall(text.lower()))


def is_repeat(text: str, earlier: str) -> bool:
    """The same question again (3+ words, at least 80% of the words shared)."""
    a, b = _words(text), _words(earlier)
    if len(a) < 3 or len(b) < 3:
        return False
    return len(a & b) / len(a | b) >= 0.8


@dataclass
class Assessment:
    """How frustrated the latest messages sound, and why."""

    scores: List[float] = field(default_factory=list)
    level: float = 0.0
    cues: List[str] = field(default_factory=list)

    @property
    def frustrated(self) -> bool:
        """Whether the level calls for a person."""
        return self.level >= THRESHOLD

    @property
    def trend(self) -> str:
        """``worsening``, ``improving`` or ``steady`` over the window."""
        if len(self.scores) < 2:
            return "steady"
        half = len(self.scores) // 2
        before = sum(self.scores[:half]) / half
        after = sum(self.scores[half:]) / (len(self.scores) - half)
        if after < before - 0.2:
            return "worsening"
        if after > before + 0.2:
            return "improving"
        return "steady"


def assess(texts: List[str]) -> Assessment:
    """Score the customer's messages (oldest first); the latest one is the last."""
    texts = [t for t in texts if t and t.strip()][-WINDOW:]
    if not texts:
        return Assessment()
    scores = [round(compound(t), 3) for t in texts]
    latest = texts[-1]
    recent = scores[-3:]
    negative = max(0.0, -scores[-1])
    trend = max(0.0, -sum(recent) / len(recent))
    repeats = sum(is_repeat(latest, earlier) for earlier in texts[:-1])
    persistent = sum(score <= NEGATIVE for score in recent)
    cues = []
    level = WEIGHT_NEGATIVE * negative + WEIGHT_TREND * trend + WEIGHT_PERSISTENT * max(0, persistent - 1)
    if scores[-1] <= NEGATIVE:
        cues.append("negative wording")
    if persistent > 1:
        cues.append(f"negative in {persistent} of the last {len(recent)} messages")
    if is_shouting(latest):
        level += WEIGHT_SHOUTING
        cues.append("ALL CAPS")
    if "!!" in latest:
        level += WEIGHT_EXCLAMATION
        cues.append("repeated exclamation marks")
    if repeats:
        level += WEIGHT_REPEAT * min(repeats, 2)
        cues.append("asked the same thing again" + (f" ({repeats + 1} times)" if repeats > 1 else ""))
    return Assessment(scores=scores, level=round(level, 3), cues=cues)


def customer_texts(tracker: Tracker) -> List[str]:
    """What the customer typed since the last handoff ended (button payloads left out)."""
    texts: List[str] = []
    for event in tracker.events:
        kind = event.get("event")
        if kind == "resume" or (kind == "slot" and event.get("name") == "handoff_case" and event.get("value") is None):
            texts = []
        elif kind == "user":
            text = (event.get("text") or "").strip()
            if text and not text.startswith("/"):
                texts.append(text)
    return texts


def sentiment_summary(tracker: Tracker) -> Dict[str, Any]:
    """The sentiment part of the handoff context package."""
    result = assess(customer_texts(tracker))
    return {"scores": result.scores, "level": result.level, "trend": result.trend, "cues": result.cues}
