"""What a voice channel remembers per call, and the call-quality events it records.

``CallState`` (``{p}:voice:call:{channel}:{call id}``), the digit/title mapping
of the offered choices (``{p}:voice:choices:{channel}:{call id}``), the event
stream ``{p}:voice:events`` and the barge-in inference; ``VoiceRequest`` is one
webhook in platform-neutral terms.
"""
import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from connectors.voice.speech import HUMAN_KEY, HUMAN_PAYLOAD, WORDS_PER_SECOND, Choice, normalise_title
from threadline import identity
from threadline.keys import Keys

CALL_TTL = 6 * 3600
CHOICES_TTL = 3600
EVENTS_MAXLEN = 100_000
BARGE_IN_MARGIN = 0.5

EVENT_CALL = "call"
EVENT_INPUT = "input"
EVENT_STATUS = "status"

BARGE_IN = "barge_in"
NO_INPUT = "no_input"
LOW_CONFIDENCE = "low_confidence"
CALLER_HANGUP = "caller_hangup"
CALL_COMPLETED = "call_completed"
CALL_FAILED = "call_failed"
TRANSFERRED = "transferred"  # handed to a person (Dial / dial)

# ---------------------------------------------------------------- call state, events


def _s(value: Any) -> Optional[str]:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass
class CallState:
    """What Threadline remembers about one call between webhooks."""

    channel: str
    call_id: str
    known: bool = False
    customer_id: Optional[str] = None
    turn: int = 0
    prompt_at: float = 0.0
    prompt_seconds: float = 0.0
    no_input: int = 0
    parts: List[str] = field(default_factory=list)
    choices: List[Dict[str, str]] = field(default_factory=list)
    human_hint_given: bool = False
    ended_by: Optional[str] = None
    status: Optional[str] = None
    last_body: Optional[str] = None
    origin: Optional[str] = None  # how the caller joined the customer (threadline.message.Origin)

    @staticmethod
    def key(channel: str, call_id: str) -> str:
        """``{p}:voice:call:{channel}:{call id}``."""
        return Keys().voice_call(channel, call_id)

    @classmethod
    def load(cls, redis: Any, channel: str, call_id: str) -> "CallState":
        """The stored state, or a fresh one (``known`` False) for a call never seen."""
        raw = {_s(k): _s(v) for k, v in redis.hgetall(cls.key(channel, call_id)).items()}
        state = cls(channel, call_id, known=bool(raw))
        if raw:
            state.customer_id = raw.get("customer_id") or None
            state.turn = int(raw.get("turn") or 0)
            state.prompt_at = float(raw.get("prompt_at") or 0)
            state.prompt_seconds = float(raw.get("prompt_seconds") or 0)
            state.no_input = int(raw.get("no_input") or 0)
            state.parts = json.loads(raw.get("parts") or "[]")
            state.choices = json.loads(raw.get("choices") or "[]")
            state.human_hint_given = raw.get("human_hint_given") == "1"
            state.ended_by = raw.get("ended_by") or None
            state.status = raw.get("status") or None
            state.last_body = raw.get("last_body")
            state.origin = raw.get("origin") or None
        return state

    def save(self, redis: Any, ttl: int = CALL_TTL) -> None:
        """Write the whole state and refresh its expiry."""
        fields = {
            "customer_id": self.customer_id or "",
            "turn": self.turn,
            "prompt_at": f"{self.prompt_at:.3f}",
            "prompt_seconds": f"{self.prompt_seconds:.2f}",
            "no_input": self.no_input,
            "parts": json.dumps(self.parts),
            "choices": json.dumps(self.choices),
            "human_hint_given": "1" if self.human_hint_given else "0",
            "ended_by": self.ended_by or "",
            "status": self.status or "",
            "last_body": self.last_body or "",
            "origin": self.origin or "",
        }
        pipe = redis.pipeline(transaction=True)
        pipe.hset(self.key(self.channel, self.call_id), mapping=fields)
        pipe.expire(self.key(self.channel, self.call_id), ttl)
        pipe.execute()

    def record_status(self, redis: Any, status: str, at: float, ttl: int = CALL_TTL) -> None:
        """Record a status callback: ``status`` and ``status:<name>`` = time."""
        self.status = status
        pipe = redis.pipeline(transaction=True)
        pipe.hset(self.key(self.channel, self.call_id), mapping={"status": status, f"status:{status}": f"{at:.3f}"})
        pipe.expire(self.key(self.channel, self.call_id), ttl)
        pipe.execute()


def choices_key(channel: str, call_id: str) -> str:
    """``{p}:voice:choices:{channel}:{call id}``."""
    return Keys().voice_choices(channel, call_id)


def store_choices(redis: Any, channel: str, call_id: str, choices: List[Choice], ttl: int = CHOICES_TTL) -> None:
    """Replace the call's digit and title mapping (always with keypad 0 -> a human)."""
    mapping = {f"d:{HUMAN_KEY}": HUMAN_PAYLOAD}
    for choice in choices:
        if choice.key:
            mapping[f"d:{choice.key}"] = choice.payload
        title = normalise_title(choice.title)
        if title:
            mapping[f"t:{title}"] = choice.payload
    key = choices_key(channel, call_id)
    pipe = redis.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, ttl)
    pipe.execute()


def chosen_payload(redis: Any, channel: str, call_id: str, digits: Optional[str], speech: Optional[str]) -> Optional[str]:
    """The payload the caller chose by keypad digit or by saying a choice's title."""
    if digits is not None:
        digits = digits.strip().rstrip("#")
        if digits == HUMAN_KEY:
            return HUMAN_PAYLOAD
        if len(digits) != 1:
            return None
        found = redis.hget(choices_key(channel, call_id), f"d:{digits}")
    elif speech:
        found = redis.hget(choices_key(channel, call_id), f"t:{normalise_title(speech)}")
    else:
        return None
    return _s(found)


def events_key() -> str:
    """The call-quality event stream: ``threadline:voice:events``."""
    return Keys().voice_events()


def record_event(
    redis: Any, kind: str, *, channel: str, call_id: str, customer_id: Optional[str], **details: Any
) -> None:
    """Append one call-quality event (call id, customer id, kind, time, details)."""
    redis.xadd(
        events_key(),
        {
            "kind": kind,
            "channel": channel,
            "call_id": call_id,
            "customer_id": customer_id or "",
            "time": f"{time.time():.3f}",
            "details": json.dumps(details, default=str),
        },
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )


def read_events(redis: Any, call_id: Optional[str] = None) -> List[Dict[str, Any]]:
    """Recorded events, oldest first, optionally of one call (tests, reports)."""
    events = []
    for _, raw in redis.xrange(events_key()):
        event = {_s(k): _s(v) for k, v in raw.items()}
        event["details"] = json.loads(event.get("details") or "{}")
        if call_id is None or event.get("call_id") == call_id:
            events.append(event)
    return events


def started_during_prompt(
    prompt_at: float,
    prompt_seconds: float,
    received_at: float,
    *,
    speech: Optional[str] = None,
    digits: Optional[str] = None,
    end_of_speech_wait: float = 1.0,
    margin: float = BARGE_IN_MARGIN,
) -> bool:
    """Whether input that arrived at ``received_at`` began before the prompt ended.

    The input's length is estimated from its words (speech) or key presses
    (digits); for speech the recogniser's end-of-speech wait is subtracted
    too. Digits may end with ``#`` rather than a timeout, so no wait is
    assumed for them: the estimate leans towards "not a barge-in".
    """
    if not prompt_at or prompt_seconds <= margin:
        return False
    if speech:
        input_seconds = len(speech.split()) / WORDS_PER_SECOND + end_of_speech_wait
    elif digits:
        input_seconds = 0.4 * len(digits)
    else:
        return False
    began = received_at - prompt_at - input_seconds
    return began < prompt_seconds - margin


@dataclass
class VoiceRequest:
    """One voice webhook in platform-neutral terms."""

    event: str  # EVENT_CALL | EVENT_INPUT | EVENT_STATUS
    call_id: str
    caller: Optional[str] = None
    called: Optional[str] = None
    speech: Optional[str] = None
    confidence: Optional[float] = None
    digits: Optional[str] = None
    status: Optional[str] = None
    reason: Optional[str] = None
    turn: Optional[int] = None
    duration: Optional[float] = None
    received_at: float = field(default_factory=time.time)

    @property
    def has_input(self) -> bool:
        """Whether the caller said or keyed something."""
        return bool((self.speech or "").strip() or (self.digits or "").strip())


_ANONYMOUS_CALLERS = frozenset({"anonymous", "restricted", "unknown", "unavailable", "private", ""})


def caller_identity(caller: Optional[str], call_id: str) -> Tuple[str, Optional[str]]:
    """(channel user id, E.164 phone or None) for a caller id.

    A valid number is its E.164 form (it joins the customer's other channels
    with low trust). A withheld or invalid caller id must not make all such
    callers one customer, so it becomes a per-call identity.
    """
    raw = (caller or "").strip()
    if raw.lower().startswith("sip:"):
        raw = raw[4:].split("@", 1)[0]
    phone = identity.normalise_phone(raw) if raw.lower() not in _ANONYMOUS_CALLERS else None
    if phone:
        return phone, phone
    if raw.lower().startswith("client:"):
        return raw, None
    return f"call:{call_id}", None
