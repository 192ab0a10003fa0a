"""Turning the bot's responses into speech: SSML text, spoken choices, the prompt.

Markdown and emoji never reach the speech engine; 6-digit order numbers and
other long digit strings are read digit by digit (``<say-as
interpret-as="digits">``), codes such as tracking numbers character by
character, phone numbers as telephone numbers; paragraphs and messages are
separated by ``<break>``. Buttons become spoken choices ("For Track an order,
press 1 or say track an order."), keyed 1-9 in order, 0 for a person.
"""
import html
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

from connectors import markup
from threadline.message import HandoffSignal

HUMAN_PAYLOAD = "/request_human"
HUMAN_KEY = "0"
MAX_KEYED_CHOICES = 9
WORDS_PER_SECOND = 2.7
HANGUP_RESPONSES = frozenset({"utter_goodbye"})

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
    # The handoff action asked for a live transfer (``{"handoff": {"transfer": true}}``);
    # the channel fills ``transfer_to`` when it has somewhere to send the call.
    transfer: bool = False
    transfer_to: Optional[str] = None

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
        handoff = HandoffSignal.from_custom(custom)
        if handoff is not None and handoff.transfer:
            prompt.transfer = True
    return prompt


def sent_elsewhere_ssml(prompt: Prompt, label: str) -> str:
    """ "I've sent the link to your WhatsApp." (only said when it really was sent)."""
    if prompt.images and not prompt.links:
        thing = "the picture" if len(prompt.images) == 1 else "the pictures"
    else:
        thing = "the link" if len(prompt.links) + len(prompt.images) == 1 else "the links"
    return escape(f"I've sent {thing} to your {label}.")
