"""What every voice channel shares: speech rendering, call state, call-quality events.

A voice connector (``twilio_voice``, ``jambonz``) is a ``VoiceInput``. Its
platform sends three kinds of webhook, all through the base pipeline
(verify -> decode -> parse -> dedupe -> identify -> Rasa)::

    POST /webhooks/<name>/webhook   a call comes in: "/greet" goes to Rasa for the caller,
                                    the customer lookups are prefetched in the background
    POST /webhooks/<name>/gather    the caller spoke or keyed digits (or said nothing)
    POST /webhooks/<name>/status    the call's status changed (completed, busy, ...)

and gets back a document (TwiML, jambonz verbs) that speaks the bot's replies
and listens again. The subclass only verifies, reads its platform's fields into
a ``VoiceRequest`` and renders a ``Prompt``.

Rendering (``Prompt``): Markdown and emoji never reach the speech engine;
6-digit order numbers and other long digit strings are read digit by digit
(``<say-as interpret-as="digits">``), codes such as tracking numbers character by
character, phone numbers as telephone numbers; messages are separated by
``<break>``. Buttons become spoken choices ("For Track an order, press 1 or
say track an order."); the keypad digit, or the title spoken back, maps to the
button's payload. Keypad 0 always asks for a human ("/request_human"). Links
and images get "I've sent the link to your WhatsApp." - and are sent there -
only when the customer has a messaging channel; otherwise they are left out.

Per call, in Redis (prefix ``THREADLINE_KEY_PREFIX``, default ``threadline``):

``{p}:voice:call:{channel}:{call id}``     hash: customer, turn, the last prompt and
                                         when it was sent, no-input count, status history
``{p}:voice:choices:{channel}:{call id}``  hash: ``d:<digit>`` / ``t:<title>`` -> payload
``{p}:voice:events``                     stream of call-quality events (all calls)

Call-quality events, kept apart from intent success: ``barge_in``,
``no_input``, ``low_confidence``, ``caller_hangup``, ``call_completed`` and
``call_failed`` (busy, no answer, failed, canceled). Neither Twilio nor jambonz
says in its gather result whether the caller interrupted the prompt, so a
barge-in is inferred: the caller's input is taken to have started at
``received - input length - end-of-speech wait``; when that is earlier than
the prompt's estimated speaking time (words at ~160 per minute plus breaks)
minus half a second, it was a barge-in. The estimate errs towards "no barge-in"
(prompt audio starts later than we assume; digits may have ended with ``#``).

A turn's URL carries its number (``/gather?turn=N``), so a platform retry of
the same turn is recognised (dedupe) and answered with the same document.

Metadata added to each ``UserMessage`` (besides the base's): ``call_sid``,
``channel_label`` ("the phone"), ``voice_event`` ("call_start" for the
greeting), ``input_mode`` (speech | dtmf), ``speech_confidence``, ``digits``,
``chosen_payload``, ``barge_in`` and ``low_confidence`` when they apply. The
caller id gives trust "low": personal data still needs step-up verification.
"""
import asyncio
import functools
import html
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

from rasa.core.channels.channel import UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import markup
from connectors.base import (
    KIND_BUTTON,
    KIND_TEXT,
    Envelope,
    Outcome,
    ThreadlineInput,
    ThreadlineOutput,
    run_sync,
)
from connectors.outbound import redis_key
from threadline import identity, prefetch, settings

logger = logging.getLogger(__name__)

HUMAN_PAYLOAD = "/request_human"
GREET_PAYLOAD = "/greet"
HUMAN_KEY = "0"
MAX_KEYED_CHOICES = 9
MAX_NO_INPUT = 2  # the first silence is reprompted, the second ends the call
CALL_TTL = 6 * 3600
CHOICES_TTL = 3600
EVENTS_MAXLEN = 100_000
WORDS_PER_SECOND = 2.7
BARGE_IN_MARGIN = 0.5
DEFAULT_LOW_CONFIDENCE = 0.5
HANGUP_RESPONSES = frozenset({"utter_goodbye"})
MESSAGING_LABELS = {"whatsapp": "WhatsApp", "telegram": "Telegram"}

EVENT_CALL = "call"
EVENT_INPUT = "input"
EVENT_STATUS = "status"

BARGE_IN = "barge_in"
NO_INPUT = "no_input"
LOW_CONFIDENCE = "low_confidence"
CALLER_HANGUP = "caller_hangup"
CALL_COMPLETED = "call_completed"
CALL_FAILED = "call_failed"

NOT_CAUGHT = "Sorry, I didn't catch that."
GOODBYE = "I haven't heard anything, so I'll end the call here. Thanks for calling Threadline, goodbye."
TROUBLE = "Sorry, something went wrong on my side. Could you say that again?"
UNAVAILABLE = "Sorry, we're having technical trouble right now. Please call back in a few minutes. Goodbye."
HUMAN_HINT = "To talk to a person, press 0 at any time."

# --------------------------------------------------------------------- speech text

_EMOJI = re.compile(
    "["
    "\U0001F000-\U0001FAFF"  # emoticons, pictographs, transport, flags, supplemental symbols
    "\u2190-\u21FF"  # arrows
    "\u2300-\u23FF"  # watch, hourglass, media controls
    "\u25A0-\u27BF"  # shapes, misc symbols, dingbats
    "\u2B00-\u2BFF"  # stars, arrows
    "\uFE0E\uFE0F\u200D\u20E3"  # variation selectors, joiner, keycap
    "\U000E0020-\U000E007F"  # tag characters (subdivision flags)
    "]+"
)
_BARE_URL = re.compile(r"(?:https?://|www\.)[^\s<>()\"']+[^\s<>()\"'.,;:!?]")
_TIME_RANGE = re.compile(r"\b(\d{1,2}:\d{2})\s*[-\u2013]\s*(\d{1,2}:\d{2})\b")
_LINE_START = re.compile(r"^[\s\u2022]+")
_SPOKEN_TOKEN = re.compile(
    r"(?P<phone>\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{2,4}){2,5}\b)"
    r"|(?P<code>\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{4,}[A-Z0-9]\b)"
    r"|(?P<digits>(?<![\d.,:])\d{5,}(?!\d|[.,:]\d))"
)
_BREAK = re.compile(r'<break time="(\d+)ms"/>')
_SAY_AS_SPELLED = re.compile(r'<say-as interpret-as="(?:digits|characters)">(.*?)</say-as>')
_TAG = re.compile(r"<[^>]+>")


def _break(ms: int) -> str:
    return f'<break time="{ms}ms"/>'


PAUSE_PARAGRAPH = _break(400)
PAUSE_CHOICE = _break(250)


def _visible(spans: Iterable[markup.Span], links: List[str]) -> str:
    """Span text without markup; link targets go to ``links`` instead of the speech."""
    out = []
    for span in spans:
        if span.kind in ("text", "code", "pre"):
            out.append(span.text)
        elif span.kind == "link":
            links.append(span.url)
            inner = _visible(span.children, [])
            out.append("" if inner.strip() == span.url else inner)
        else:
            out.append(_visible(span.children, links))
    return "".join(out)


def speech_text(markdown: str, *, sentences: bool = True) -> Tuple[str, List[str]]:
    """(what may be spoken, the links taken out of it) for one Markdown message.

    Markdown and emoji are removed, URLs are taken out, list items and lines
    become sentences and time ranges read "9:00 to 18:00". Paragraphs stay
    separated by a blank line and, with ``sentences``, end with a full stop
    (so the voice falls at the end, even before a ``<break>``).
    """
    links: List[str] = []
    text = _visible(markup.parse(markdown or ""), links)

    def take_url(match: "re.Match") -> str:
        links.append(match.group(0))
        return ""

    text = _BARE_URL.sub(take_url, text)
    text = _EMOJI.sub(" ", text)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = _TIME_RANGE.sub(r"\1 to \2", text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines: List[str] = []
        for line in block.splitlines():
            line = re.sub(r"\s+", " ", _LINE_START.sub("", line)).strip(" ,;")
            if not line or not re.search(r"\w", line):
                continue
            if lines and lines[-1][-1] not in ".!?:":
                lines[-1] += "."
            lines.append(line)
        if lines:
            paragraph = " ".join(lines)
            paragraphs.append(paragraph + "." if sentences and paragraph[-1].isalnum() else paragraph)
    return "\n\n".join(paragraphs), links


def ssml_fragment(text: str) -> str:
    """Plain speech text as SSML (no ``<speak>``): escaped, with say-as for numbers and codes."""
    out = []
    position = 0
    for match in _SPOKEN_TOKEN.finditer(text):
        out.append(escape(text[position:match.start()]))
        token = match.group(0)
        if match.group("phone"):
            out.append(f'<say-as interpret-as="telephone">{escape(token)}</say-as>')
        elif match.group("code"):
            out.append(f'<say-as interpret-as="characters">{escape(token.replace("-", ""))}</say-as>')
        else:
            out.append(f'<say-as interpret-as="digits">{token}</say-as>')
        position = match.end()
    out.append(escape(text[position:]))
    return "".join(out)


def message_ssml(markdown: str) -> Tuple[str, List[str]]:
    """(SSML fragment, links) for one bot message; paragraphs get a pause between them."""
    text, links = speech_text(markdown)
    return PAUSE_PARAGRAPH.join(ssml_fragment(p) for p in text.split("\n\n") if p), links


def speak(fragment: str) -> str:
    """A complete SSML document."""
    return f"<speak>{fragment}</speak>"


def spoken_preview(fragment: str) -> str:
    """Roughly what the caller hears, as text: digits spelled out, tags dropped (logs, tests)."""
    spelled = _SAY_AS_SPELLED.sub(lambda m: " ".join(html.unescape(m.group(1))), fragment)
    plain = html.unescape(_TAG.sub(" ", spelled))
    return re.sub(r"\s+([.,!?])", r"\1", re.sub(r"\s+", " ", plain)).strip()


def estimated_seconds(fragment: str) -> float:
    """How long a TTS engine takes to say ``fragment`` (words at ~160/min plus breaks)."""
    words = len(spoken_preview(fragment).split())
    pauses = sum(int(ms) for ms in _BREAK.findall(fragment)) / 1000.0
    return words / WORDS_PER_SECOND + pauses


# ------------------------------------------------------------------------ choices


@dataclass
class Choice:
    """A button offered by voice: keypad ``key`` ("" when only speakable) and payload."""

    key: str
    title: str
    payload: str


def normalise_title(text: str) -> str:
    """A title or utterance compared without case, punctuation or emoji."""
    spoken, _ = speech_text(text or "", sentences=False)
    return re.sub(r"[^\w ]+", "", spoken.lower()).strip()


def make_choices(buttons: Iterable[Dict[str, Any]], first_key: int = 1) -> List[Choice]:
    """Keypad digits for ``buttons``: 1-9 in order, 0 for a "talk to a person" button."""
    choices = []
    next_key = first_key
    for button in buttons:
        if not isinstance(button, dict):
            continue
        title, payload = button.get("title"), button.get("payload")
        if not title or not payload:
            continue
        if payload == HUMAN_PAYLOAD:
            key = HUMAN_KEY
        elif next_key <= MAX_KEYED_CHOICES:
            key, next_key = str(next_key), next_key + 1
        else:
            key = ""
        choices.append(Choice(key, str(title), str(payload)))
    return choices


def choices_ssml(choices: List[Choice]) -> str:
    """ "For Track an order, press 1 or say track an order." for each choice."""
    sentences = []
    for choice in choices:
        title = ssml_fragment(speech_text(choice.title, sentences=False)[0])
        said = escape(normalise_title(choice.title))
        if choice.key:
            sentences.append(f"For {title}, press {choice.key} or say {said}.")
        else:
            sentences.append(f"Or say {said}.")
    return PAUSE_CHOICE.join(sentences)


# ------------------------------------------------------------------------- prompt


@dataclass
class Prompt:
    """What to say next and how to listen: SSML fragments, choices, hang up or not."""

    parts: List[str] = field(default_factory=list)
    choices: List[Choice] = field(default_factory=list)
    hangup: bool = False
    links: List[str] = field(default_factory=list)
    images: List[str] = field(default_factory=list)

    @property
    def fragment(self) -> str:
        """The whole prompt as one SSML fragment."""
        return PAUSE_PARAGRAPH.join(part for part in self.parts if part)

    @property
    def ssml(self) -> str:
        """The whole prompt as an SSML document."""
        return speak(self.fragment)

    @property
    def hints(self) -> List[str]:
        """Phrases the speech recogniser should expect (the choices' titles)."""
        return [normalise_title(c.title) for c in self.choices if normalise_title(c.title)]

    @property
    def seconds(self) -> float:
        """Estimated speaking time."""
        return estimated_seconds(self.fragment)


def build_prompt(messages: List[Dict[str, Any]]) -> Prompt:
    """The prompt for the bot's responses to one turn, in order.

    Text is spoken, buttons (and quick replies, and carousel elements' buttons)
    become spoken choices right after their message, keyed across the whole
    turn; links and images are collected for ``Prompt.links``/``images``.
    """
    prompt = Prompt()
    for message in messages:
        text = message.get("text") or ""
        custom = message.get("custom")
        if not text and isinstance(custom, dict) and isinstance(custom.get("text"), str):
            text = custom["text"]
        if text:
            fragment, links = message_ssml(text)
            prompt.links.extend(links)
            if fragment:
                prompt.parts.append(fragment)
        buttons = list(message.get("buttons") or message.get("quick_replies") or [])
        for element in message.get("elements") or []:
            if isinstance(element, dict):
                heading = " ".join(str(element.get(k) or "") for k in ("title", "subtitle")).strip()
                if heading:
                    prompt.parts.append(message_ssml(heading)[0])
                buttons.extend(element.get("buttons") or [])
        if buttons:
            keyed = [c for c in prompt.choices if c.key and c.key != HUMAN_KEY]
            new = make_choices(buttons, first_key=len(keyed) + 1)
            if new:
                prompt.choices.extend(new)
                prompt.parts.append(choices_ssml(new))
        if message.get("image"):
            prompt.images.append(str(message["image"]))
        if message.get("attachment"):
            prompt.links.append(str(message["attachment"]))
        if message.get("utter_action") in HANGUP_RESPONSES:
            prompt.hangup = True
    return prompt


def sent_elsewhere_ssml(prompt: Prompt, label: str) -> str:
    """ "I've sent the link to your WhatsApp." (only said when it really was sent)."""
    if prompt.images and not prompt.links:
        thing = "the picture" if len(prompt.images) == 1 else "the pictures"
    else:
        thing = "the link" if len(prompt.links) + len(prompt.images) == 1 else "the links"
    return escape(f"I've sent {thing} to your {label}.")


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

    @staticmethod
    def key(channel: str, call_id: str) -> str:
        """``{p}:voice:call:{channel}:{call id}``."""
        return redis_key("voice", "call", channel, call_id)

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
    return redis_key("voice", "choices", channel, call_id)


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
    return redis_key("voice", "events")


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


# -------------------------------------------------------------------- the channel


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


class VoiceOutput(ThreadlineOutput):
    """Collects the bot's responses to one webhook; the input renders them afterwards.

    Also what ``get_output_channel`` returns: a phone call cannot receive a
    proactive message outside a webhook, so those are collected and dropped.
    """

    def __init__(self, config: Dict[str, str], sender: Any, redis: Any = None) -> None:
        super().__init__(config, sender, redis)
        self.messages: List[Dict[str, Any]] = []

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Collect one response, remembering the template it came from (``utter_action``)."""
        before = len(self.messages)
        await super().send_response(recipient_id, message)
        if message.get("utter_action"):
            for collected in self.messages[before:]:
                collected["utter_action"] = message["utter_action"]

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Collect text."""
        self.messages.append({"text": text})

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any) -> None:
        """Collect text with buttons (spoken as choices)."""
        self.messages.append({"text": text, "buttons": buttons})

    async def send_quick_replies(self, recipient_id: str, text: str, quick_replies: List[Dict[str, Any]], **kwargs: Any) -> None:
        """Quick replies are spoken like buttons."""
        self.messages.append({"text": text, "buttons": quick_replies})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """Collect an image (sent to a messaging channel, or left out)."""
        self.messages.append({"image": image})

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        """Collect an attachment link."""
        self.messages.append({"attachment": attachment})

    async def send_elements(self, recipient_id: str, elements: Iterable[Any], **kwargs: Any) -> None:
        """Collect carousel elements (titles spoken, buttons become choices)."""
        self.messages.append({"elements": list(elements)})

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """A custom payload is spoken only if it carries ``text``."""
        if isinstance(json_message, dict) and isinstance(json_message.get("text"), str):
            self.messages.append({"custom": json_message})


class VoiceInput(ThreadlineInput):
    """Base of the voice channels: the call flow on top of the shared pipeline.

    Subclasses set ``channel``/``credential_env`` and implement ``verify``,
    ``decode``, ``voice_request`` (platform fields -> ``VoiceRequest``),
    ``render`` (``Prompt`` -> response body) and ``status_body``.
    """

    output_class = VoiceOutput
    content_type = "text/plain"
    terminal_statuses = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
    channel_label = "the phone"
    end_of_speech_wait = 1.0

    def __init__(self, config: Dict[str, str], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.prefetcher = prefetch.Prefetcher()
        self._deliveries: set = set()
        self.low_confidence = float(settings.env("VOICE_LOW_CONFIDENCE", str(DEFAULT_LOW_CONFIDENCE)))

    # ------------------------------------------------------------ subclass hooks

    def voice_request(self, request: Request, payload: Any) -> VoiceRequest:
        """The platform's fields as a ``VoiceRequest``; raise ``BadPayload`` if unusable."""
        raise NotImplementedError

    def render(self, request: Request, prompt: Prompt, action_url: str) -> str:
        """The response body that speaks ``prompt`` and listens at ``action_url``."""
        raise NotImplementedError

    def status_body(self) -> str:
        """The body answering a status callback."""
        return ""

    # ------------------------------------------------------------------- routes

    def register_routes(
        self, blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        """``POST /gather`` (the caller's input) and ``POST /status`` (call status)."""
        for route, event in (("gather", EVENT_INPUT), ("status", EVENT_STATUS)):

            async def receive(request: Request, _event: str = event) -> HTTPResponse:
                request.ctx.voice_route = _event
                return await self.handle_request(request, on_new_message)

            blueprint.add_route(receive, f"/{route}", methods=["POST"], stream=True, name=route)

    def public_base(self, request: Request) -> str:
        """Where the platform reaches us: ``public_base_url`` if set, else this request's host."""
        configured = (self.config.get("public_base_url") or "").rstrip("/")
        return configured or f"{request.scheme}://{request.host}"

    def action_url(self, request: Request, turn: int) -> str:
        """The absolute URL of the next turn's input webhook."""
        return f"{self.public_base(request)}/webhooks/{self.name()}/gather?turn={turn}"

    # ------------------------------------------------------------------ pipeline

    def parse(self, request: Request, payload: Any) -> List[Envelope]:
        """One envelope per call start or caller input; none for silence and status."""
        voice = self.voice_request(request, payload)
        request.ctx.voice = voice
        if voice.event == EVENT_STATUS or (voice.event == EVENT_INPUT and not voice.has_input):
            request.ctx.voice_envelopes = []
            return []
        user_id, phone = caller_identity(voice.caller, voice.call_id)
        extra: Dict[str, Any] = {"call_sid": voice.call_id, "channel_label": self.channel_label}
        if voice.event == EVENT_CALL:
            envelope = Envelope(
                channel=self.name(), channel_user_id=user_id, message_id=f"{voice.call_id}:call",
                kind=KIND_BUTTON, payload=GREET_PAYLOAD, phone=phone, extra={**extra, "voice_event": "call_start"},
            )
        else:
            turn = f"t{voice.turn}" if voice.turn is not None else uuid.uuid4().hex
            if (voice.speech or "").strip():
                extra.update(input_mode="speech", speech_confidence=voice.confidence)
                text = voice.speech.strip()
            else:
                extra.update(input_mode="dtmf", digits=voice.digits.strip())
                text = voice.digits.strip().rstrip("#") or voice.digits.strip()
            envelope = Envelope(
                channel=self.name(), channel_user_id=user_id, message_id=f"{voice.call_id}:{turn}",
                kind=KIND_TEXT, text=text, phone=phone, extra=extra,
            )
        request.ctx.voice_envelopes = [envelope]
        return [envelope]

    def record_events(self, request: Request, payload: Any) -> None:
        """Load the call's state; record status, silence, confidence and barge-in (blocking)."""
        voice: VoiceRequest = request.ctx.voice
        redis = self.redis_client()
        state = CallState.load(redis, self.name(), voice.call_id)
        request.ctx.call_state = state
        emit = functools.partial(
            record_event, redis, channel=self.name(), call_id=voice.call_id, customer_id=state.customer_id
        )
        if voice.event == EVENT_STATUS:
            self._record_status(redis, state, voice, emit)
            return
        current = voice.turn is None or voice.turn == state.turn
        if voice.event != EVENT_INPUT or not current:
            return  # a call start, or a late retry of an earlier turn
        if not voice.has_input:
            state.no_input += 1
            emit(NO_INPUT, count=state.no_input, turn=voice.turn, reason=voice.reason)
            return
        state.no_input = 0
        envelope = request.ctx.voice_envelopes[0]
        if voice.speech and voice.confidence is not None and voice.confidence < self.low_confidence:
            envelope.extra["low_confidence"] = True
            emit(LOW_CONFIDENCE, confidence=voice.confidence, turn=voice.turn)
        if state.known and started_during_prompt(
            state.prompt_at, state.prompt_seconds, voice.received_at,
            speech=voice.speech, digits=None if voice.speech else voice.digits,
            end_of_speech_wait=self.end_of_speech_wait,
        ):
            envelope.extra["barge_in"] = True
            emit(
                BARGE_IN, turn=voice.turn, input=envelope.extra.get("input_mode"),
                elapsed=round(voice.received_at - state.prompt_at, 2), prompt_seconds=round(state.prompt_seconds, 2),
            )

    def _record_status(self, redis: Any, state: CallState, voice: VoiceRequest, emit: Callable[..., None]) -> None:
        status = (voice.status or "").lower()
        state.record_status(redis, status, voice.received_at)
        if status == "completed":
            ended_by = state.ended_by or "caller"
            if ended_by == "caller":
                emit(CALLER_HANGUP, turn=state.turn)
            emit(CALL_COMPLETED, ended_by=ended_by, duration=voice.duration, turns=state.turn)
        elif status in self.terminal_statuses:
            emit(CALL_FAILED, status=status)

    async def handle_envelope(
        self, request: Request, envelope: Envelope, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Outcome:
        """At a call start, begin the customer lookups as soon as the caller is identified."""
        voice: VoiceRequest = request.ctx.voice
        if voice.event != EVENT_CALL:
            return await super().handle_envelope(request, envelope, on_new_message)

        async def forward(message: UserMessage) -> Any:
            self.start_prefetch(request, voice.call_id, message.sender_id)
            return await on_new_message(message)

        return await super().handle_envelope(request, envelope, forward)

    def start_prefetch(self, request: Request, call_id: str, customer_id: str) -> None:
        """Prefetch profile, open cases and conversation (off with ``VOICE_PREFETCH=false``)."""
        if (settings.env("VOICE_PREFETCH", "true") or "").lower() in ("0", "false", "no", "off"):
            return
        agent = getattr(request.app.ctx, "agent", None)
        loaders = prefetch.default_loaders(customer_id, getattr(agent, "tracker_store", None))
        self.prefetcher.start(f"{self.name()}:{call_id}", customer_id, loaders, redis=self._redis)

    def message_text(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """Keypad 0 asks for a human; a choice's digit or spoken title becomes its payload."""
        if envelope.kind == KIND_TEXT:
            dtmf = envelope.extra.get("input_mode") == "dtmf"
            chosen = chosen_payload(
                self.redis_client(), self.name(), envelope.extra["call_sid"],
                envelope.extra.get("digits") if dtmf else None, None if dtmf else envelope.text,
            )
            if chosen:
                envelope.extra["chosen_payload"] = chosen
                return chosen
        return super().message_text(envelope, customer_id)

    def get_output_channel(self) -> VoiceOutput:
        """A collector (see ``VoiceOutput``)."""
        return self.output_class(self.config, self.sender, redis=self._redis)

    def output_channel_for(self, request: Request, envelope: Envelope) -> VoiceOutput:
        """A fresh collector per webhook; its messages are rendered into the response."""
        request.ctx.voice_output = self.get_output_channel()
        return request.ctx.voice_output

    def build_response(self, request: Request, outcomes: List[Outcome]) -> HTTPResponse:
        """Deferred: ``handle_request`` renders once the call state is at hand."""
        request.ctx.voice_outcomes = outcomes
        return response.empty()

    # ---------------------------------------------------------------- responding

    async def handle_request(
        self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> HTTPResponse:
        """The base pipeline, then the voice document for the platform.

        A failure after verification still answers the caller politely (and
        hangs up) rather than leaving the platform with an error page.
        """
        request.ctx.voice_outcomes = None
        result = await super().handle_request(request, on_new_message)
        outcomes = request.ctx.voice_outcomes
        voice = getattr(request.ctx, "voice", None)
        try:
            if outcomes is not None:
                return await self.respond(request, outcomes)
        except Exception:
            logger.exception("%s: could not answer call %s", self.name(), getattr(voice, "call_id", "?"))
        else:
            if result.status < 500 or voice is None or voice.event == EVENT_STATUS:
                return result
        return self._document(self.render(request, Prompt([escape(UNAVAILABLE)], hangup=True), ""))

    def _document(self, body: str) -> HTTPResponse:
        return response.text(body, content_type=self.content_type)

    async def respond(self, request: Request, outcomes: List[Outcome]) -> HTTPResponse:
        """Render the next prompt for the call and remember it."""
        voice: VoiceRequest = request.ctx.voice
        state: CallState = request.ctx.call_state
        if voice.event == EVENT_STATUS:
            if voice.status and voice.status.lower() in self.terminal_statuses:
                self.prefetcher.cancel(f"{self.name()}:{voice.call_id}")
            return self._document(self.status_body())
        outcome = outcomes[0] if outcomes else None
        if outcome is not None and outcome.status == "duplicate" and state.last_body:
            return self._document(state.last_body)
        if outcome is not None and outcome.customer_id:
            state.customer_id = outcome.customer_id
        if outcome is None:
            prompt = self._after_silence(state)
        elif outcome.status == "failed":
            prompt = Prompt([escape(TROUBLE)])
        else:
            output: Optional[VoiceOutput] = getattr(request.ctx, "voice_output", None)
            prompt = build_prompt(output.messages if output else [])
            await self._offer_elsewhere(request, state, prompt)
        body = await run_sync(self._commit, request, state, prompt)
        return self._document(body)

    def _after_silence(self, state: CallState) -> Prompt:
        if state.no_input >= MAX_NO_INPUT:
            return Prompt([escape(GOODBYE)], hangup=True)
        choices = [Choice(**c) for c in state.choices]
        return Prompt([escape(NOT_CAUGHT)] + state.parts, choices=choices)

    def _commit(self, request: Request, state: CallState, prompt: Prompt) -> str:
        """Render, then store turn, prompt, timing and choices (blocking)."""
        if prompt.choices and not state.human_hint_given and not any(c.key == HUMAN_KEY for c in prompt.choices):
            prompt.parts.append(escape(HUMAN_HINT))
            state.human_hint_given = True
        state.turn += 1
        body = self.render(request, prompt, self.action_url(request, state.turn))
        redis = self.redis_client()
        state.prompt_at = time.time()
        state.prompt_seconds = prompt.seconds
        state.parts = [p for p in prompt.parts if p != escape(NOT_CAUGHT)]
        state.choices = [c.__dict__ for c in prompt.choices]
        state.last_body = body
        if prompt.hangup:
            state.ended_by = "bot"
        state.save(redis)
        store_choices(redis, self.name(), state.call_id, prompt.choices)
        logger.debug("%s call %s turn %d: %s", self.name(), state.call_id, state.turn, spoken_preview(prompt.fragment))
        return body

    # ---------------------------------------------- links and images, sent elsewhere

    async def _offer_elsewhere(self, request: Request, state: CallState, prompt: Prompt) -> None:
        """Send links/images to the customer's messaging channel and say so; else omit them."""
        if not (prompt.links or prompt.images) or not state.customer_id:
            return
        found = await run_sync(self._messaging_channel, request, state.customer_id)
        if found is None:
            logger.info("%s: links left out of the call (no messaging channel)", self.name())
            return
        name, output = found
        prompt.parts.append(sent_elsewhere_ssml(prompt, MESSAGING_LABELS[name]))
        task = asyncio.ensure_future(self._deliver(output, state.customer_id, prompt.links, prompt.images))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _messaging_channel(self, request: Request, customer_id: str) -> Optional[Tuple[str, Any]]:
        profile = prefetch.get_cached(customer_id, "profile", self._redis)
        if profile is None:
            redis = self.redis_client()
            profile = {"channels": list(identity.addresses(customer_id, redis)),
                       "last_channel": identity.last_channel(customer_id, redis)}
        channels = [c for c in profile.get("channels") or [] if c in MESSAGING_LABELS]
        channels.sort(key=lambda c: (c != profile.get("last_channel"), list(MESSAGING_LABELS).index(c)))
        configured = {c.name(): c for c in getattr(request.app.ctx, "input_channels", None) or []}
        for name in channels:
            if name in configured:
                return name, configured[name].get_output_channel()
        return None

    async def _deliver(self, output: Any, customer_id: str, links: List[str], images: List[str]) -> None:
        try:
            for image in images:
                await output.send_image_url(customer_id, image)
            for link in links:
                await output.send_text_message(customer_id, link)
        except Exception:
            logger.exception("%s: could not send links to the customer's messaging channel", self.name())
