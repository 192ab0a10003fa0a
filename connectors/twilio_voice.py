"""Twilio Programmable Voice (``twilio_voice``): phone calls answered with TwiML.

Routes under ``/webhooks/twilio_voice/`` (see ``connectors.voice`` for the flow):

``POST /webhook``  the number's "A call comes in" URL (CallSid, From, To, ...)
``POST /gather``   our ``<Gather action=...>``: SpeechResult and Confidence, or Digits
``POST /status``   the number's "Call status changes" URL (CallStatus, CallDuration)

Every request must carry a valid ``X-Twilio-Signature``: base64 of the
HMAC-SHA1, under the account's auth token, of the full URL Twilio requested
followed by every POST parameter name and value, sorted by name. Twilio signs
the public URL it called; behind a proxy set ``TWILIO_PUBLIC_BASE_URL``
(``https://example.com`` or ``https://example.com/prefix``) so the same URL is
rebuilt here, otherwise this request's own URL is used. As Twilio's own
helpers do, the URL is accepted with and without the scheme's default port.

Replies: ``<Response><Gather input="speech dtmf" bargeIn="true" ...><Say>SSML</Say>
</Gather></Response>``; a goodbye is ``<Say>`` then ``<Hangup/>``.

Settings (credentials.yml keys, else environment): ``auth_token``
(``TWILIO_AUTH_TOKEN``, required), ``public_base_url`` (``TWILIO_PUBLIC_BASE_URL``),
``language`` (``TWILIO_VOICE_LANGUAGE``, en-US), ``voice`` (``TWILIO_VOICE``,
Polly.Joanna-Neural, an SSML-capable voice), ``speech_timeout``
(``TWILIO_SPEECH_TIMEOUT``, seconds or "auto"), ``input_timeout``
(``TWILIO_INPUT_TIMEOUT``, seconds of silence before the no-input path).
"""
import base64
import hashlib
import hmac
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from rasa.shared.exceptions import RasaException
from sanic.request import Request

from connectors.base import BadPayload
from connectors.voice import (
    EVENT_CALL,
    EVENT_STATUS,
    Prompt,
    VoiceInput,
    VoiceOutput,
    VoiceRequest,
)

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
FORM_TYPE = "application/x-www-form-urlencoded"
DEFAULT_PORTS = {"https": 443, "http": 80}
STATUS_EVENTS = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

Params = Union[Mapping[str, Any], Iterable[Tuple[str, str]]]


def _pairs(params: Params) -> List[Tuple[str, str]]:
    if isinstance(params, Mapping):
        pairs = []
        for name, value in params.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs.extend((str(name), str(v)) for v in values)
        return pairs
    return [(str(name), str(value)) for name, value in params]


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url``.

    The signed string is the URL, then each parameter name followed by its
    value, ordered by name (and, for a repeated name, by value).
    """
    grouped: Dict[str, set] = {}
    for name, value in _pairs(params):
        grouped.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> List[str]:
    """``url`` as given, without its default port, and with it spelled out."""
    parts = urlsplit(url)
    default = DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if parts.username or parts.password:
        credentials = parts.username or ""
        if parts.password is not None:
            credentials += ":" + parts.password
        host = f"{credentials}@{host}"
    variants = [url]
    try:
        port = parts.port
    except ValueError:
        return variants
    if port is None and default:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif port is not None and port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    return variants


def validate_signature(auth_token: str, url: str, params: Params, signature: Optional[str]) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` and ``params`` (constant-time compare)."""
    if not signature or not auth_token:
        return False
    given = signature.strip().encode("utf-8")
    pairs = _pairs(params)
    matches = [hmac.compare_digest(compute_signature(auth_token, u, pairs).encode(), given) for u in url_variants(url)]
    return any(matches)


def form_pairs(body: bytes, strict: bool = False) -> List[Tuple[str, str]]:
    """``application/x-www-form-urlencoded`` parameters, in order.

    ``strict`` raises ``BadPayload`` on malformed fields or invalid UTF-8; the
    lenient form (used for the signature, which must be checked first) keeps
    whatever can be read.
    """
    if not strict:
        return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(f"malformed form body: {exc}") from exc


def _number(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _turn(request: Request) -> Optional[int]:
    value = request.args.get("turn")
    return int(value) if value and value.isdigit() else None


def twiml(prompt: Prompt, *, action_url: str, say: Dict[str, str], gather: Dict[str, str]) -> str:
    """A TwiML document speaking ``prompt``, then listening (or hanging up)."""
    attributes = lambda values: "".join(f" {k}={quoteattr(str(v))}" for k, v in values.items())  # noqa: E731
    fragment = prompt.fragment
    spoken = f"<Say{attributes(say)}>{fragment}</Say>" if fragment else ""
    if prompt.transfer_to:
        target = prompt.transfer_to
        noun = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip:") else f"<Number>{escape(target)}</Number>"
        return f"{XML_DECLARATION}<Response>{spoken}<Dial>{noun}</Dial></Response>"
    if prompt.hangup:
        return f"{XML_DECLARATION}<Response>{spoken}<Hangup/></Response>"
    listen = dict(gather, action=action_url, method="POST", actionOnEmptyResult="true")
    if prompt.choices:
        listen["numDigits"] = "1"
    if prompt.hints:
        listen["hints"] = ", ".join(prompt.hints)
    return f"{XML_DECLARATION}<Response><Gather{attributes(listen)}>{spoken}</Gather></Response>"


class TwilioVoiceOutput(VoiceOutput):
    """Collects the bot's responses to one Twilio webhook."""

    channel = "twilio_voice"


class TwilioVoiceInput(VoiceInput):
    """Answers Twilio Programmable Voice calls (settings: see the module docstring)."""

    channel = "twilio_voice"
    output_class = TwilioVoiceOutput
    content_type = "text/xml"
    credential_env = {
        "auth_token": "TWILIO_AUTH_TOKEN",
        "public_base_url": "TWILIO_PUBLIC_BASE_URL",
        "language": "TWILIO_VOICE_LANGUAGE",
        "voice": "TWILIO_VOICE",
        "speech_timeout": "TWILIO_SPEECH_TIMEOUT",
        "input_timeout": "TWILIO_INPUT_TIMEOUT",
    }
    credential_defaults = {
        "public_base_url": "",
        "language": "en-US",
        "voice": "Polly.Joanna-Neural",
        "speech_timeout": "auto",
        "input_timeout": "5",
    }

    def __init__(self, config: Dict[str, str], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        timeout = self.config["speech_timeout"].strip().lower()
        if timeout != "auto" and not timeout.isdigit():
            raise RasaException(f"twilio_voice: speech_timeout must be 'auto' or whole seconds, not {timeout!r}")
        if not self.config["input_timeout"].strip().isdigit():
            raise RasaException("twilio_voice: input_timeout must be whole seconds")
        self.config["speech_timeout"] = timeout
        # "auto" ends speech after a short pause; about a second in practice.
        self.end_of_speech_wait = 1.0 if timeout == "auto" else float(timeout)

    # ------------------------------------------------------------- verification

    def signed_url(self, request: Request) -> str:
        """The URL Twilio signed: the public base URL (if set) plus path and query."""
        base = (self.config.get("public_base_url") or "").rstrip("/")
        if not base:
            return request.url
        query = f"?{request.query_string}" if request.query_string else ""
        return f"{base}{request.path}{query}"

    def verify(self, request: Request, body: bytes) -> bool:
        """Check ``X-Twilio-Signature`` over the URL and the POST parameters."""
        content_type = (request.headers.get("content-type") or FORM_TYPE).split(";")[0].strip().lower()
        params = form_pairs(body) if content_type == FORM_TYPE else []
        return validate_signature(
            self.config["auth_token"], self.signed_url(request), params, request.headers.get("x-twilio-signature")
        )

    def decode(self, request: Request, body: bytes) -> Dict[str, str]:
        """The form parameters (repeated names: the last value)."""
        content_type = (request.headers.get("content-type") or FORM_TYPE).split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            raise BadPayload(f"expected {FORM_TYPE}, got {content_type}")
        return dict(form_pairs(body, strict=True))

    def voice_request(self, request: Request, form: Dict[str, str]) -> VoiceRequest:
        """CallSid, the caller, and SpeechResult/Confidence/Digits or CallStatus."""
        call_id = (form.get("CallSid") or "").strip()
        if not call_id:
            raise BadPayload("no CallSid")
        route = getattr(request.ctx, "voice_route", EVENT_CALL)
        status = (form.get("CallStatus") or "").strip().lower()
        if route == EVENT_CALL and status in STATUS_EVENTS and "SpeechResult" not in form and "Digits" not in form:
            route = EVENT_STATUS  # a status callback pointed at the call URL
        if route == EVENT_STATUS and not status:
            raise BadPayload("status callback without CallStatus")
        outbound = (form.get("Direction") or "").startswith("outbound")
        return VoiceRequest(
            event=route,
            call_id=call_id,
            caller=form.get("To") if outbound else form.get("From") or form.get("Caller"),
            called=form.get("From") if outbound else form.get("To"),
            speech=form.get("SpeechResult"),
            confidence=_number(form.get("Confidence")),
            digits=form.get("Digits"),
            status=status or None,
            turn=_turn(request),
            duration=_number(form.get("CallDuration")),
        )

    # ---------------------------------------------------------------- rendering

    def render(self, request: Request, prompt: Prompt, action_url: str) -> str:
        """TwiML: ``<Say>`` inside ``<Gather>``, or ``<Say>`` and ``<Hangup/>``."""
        say = {"voice": self.config["voice"], "language": self.config["language"]}
        gather = {
            "input": "speech dtmf",
            "bargeIn": "true",
            "speechTimeout": self.config["speech_timeout"],
            "timeout": self.config["input_timeout"],
            "language": self.config["language"],
        }
        return twiml(prompt, action_url=action_url, say=say, gather=gather)

    def status_body(self) -> str:
        """An empty TwiML response."""
        return f"{XML_DECLARATION}<Response/>"


def sign_request(auth_token: str, url: str, params: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """Headers for posting ``params`` to ``url`` as Twilio would (tests, benchmarks)."""
    return {"Content-Type": FORM_TYPE, "X-Twilio-Signature": compute_signature(auth_token, url, params)}
