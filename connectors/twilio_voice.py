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
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl

from rasa.shared.exceptions import RasaException
from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML
from twilio.twiml.voice_response import Gather, Say, VoiceResponse

from connectors import recording
from connectors.base import BadPayload, Inbound
from connectors.voice.calls import caller_identity
from connectors.voice import (
    EVENT_CALL,
    EVENT_STATUS,
    Prompt,
    VoiceInput,
    VoiceOutput,
    VoiceRequest,
)

FORM_TYPE = "application/x-www-form-urlencoded"
STATUS_EVENTS = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

Params = Union[Mapping[str, Any], Iterable[Tuple[str, str]]]


class _Form(dict):
    """Form parameters with repeated names, in the shape Twilio's validator reads (``getall``)."""

    def __init__(self, params: Params) -> None:
        super().__init__()
        items = params.items() if isinstance(params, Mapping) else params
        for name, value in items:
            values = value if isinstance(value, (list, tuple)) else [value]
            self.setdefault(str(name), []).extend(str(v) for v in values)

    def getall(self, name: str) -> List[str]:
        return self[name]


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url`` (Twilio's own code)."""
    return RequestValidator(auth_token).compute_signature(url, _Form(params))


def validate_signature(auth_token: str, url: str, params: Params, signature: Optional[str]) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` and ``params``.

    Twilio's ``RequestValidator``: constant-time, and the URL is accepted with
    and without the scheme's default port, as Twilio signs either.
    """
    if not signature or not auth_token:
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, _Form(params), signature.strip()))
    except (TypeError, ValueError):
        return False


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


def _turn(inbound: Inbound) -> Optional[int]:
    value = inbound.arg("turn")
    return int(value) if value and value.isascii() and value.isdigit() else None


def _say(fragment: str, attributes: Dict[str, str]) -> Say:
    """A ``<Say>`` built with Twilio's SSML helpers from our SSML fragment."""
    say = Say(**attributes)
    root = ET.fromstring(f"<speak>{fragment}</speak>")
    if root.text:
        say.append(root.text)
    for element in root:
        if element.tag == "break":
            say.break_(time=element.get("time"))
        elif element.tag == "say-as":
            say.say_as(element.text or "", interpret_as=element.get("interpret-as"))
        else:  # not produced by connectors.voice.speech; keep its words
            say.append("".join(element.itertext()))
        if element.tail:
            say.append(element.tail)
    return say


class Recording(TwiML):
    """``<Recording>``, the noun of ``<Start>`` that records the whole call from here on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "Recording"


def twiml(prompt: Prompt, *, action_url: str, say: Dict[str, str], gather: Dict[str, str],
          recording_notice: Optional[str] = None) -> str:
    """A TwiML document speaking ``prompt``, then listening (or transferring, or hanging up).

    With ``recording_notice``, the document first speaks the notice and only
    then starts recording the call.
    """
    document = VoiceResponse()
    if recording_notice:
        document.append(Say(recording_notice, **say))
        document.start().append(Recording(channels="dual"))
    fragment = prompt.fragment
    spoken = _say(fragment, say) if fragment else None
    if prompt.transfer_to or prompt.hangup:
        if spoken is not None:
            document.append(spoken)
        if prompt.transfer_to:
            dial = document.dial()
            target = prompt.transfer_to
            dial.sip(target) if target.startswith("sip:") else dial.number(target)
        else:
            document.hangup()
        return document.to_xml()
    listen: Dict[str, Any] = dict(gather, action=action_url, method="POST", action_on_empty_result=True)
    if prompt.choices:
        listen["num_digits"] = 1
    if prompt.hints:
        listen["hints"] = ", ".join(prompt.hints)
    listening = Gather(**listen)
    if spoken is not None:
        listening.append(spoken)
    document.append(listening)
    return document.to_xml()


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

    def signed_url(self, inbound: Inbound) -> str:
        """The URL Twilio signed: the public base URL (if set) plus path and query."""
        base = (self.config.get("public_base_url") or "").rstrip("/")
        if not base:
            return inbound.url
        query = f"?{inbound.query_string}" if inbound.query_string else ""
        return f"{base}{inbound.path}{query}"

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """Check ``X-Twilio-Signature`` over the URL and the POST parameters (Twilio's validator)."""
        content_type = (inbound.headers.get("content-type") or FORM_TYPE).split(";")[0].strip().lower()
        params = form_pairs(body) if content_type == FORM_TYPE else []
        return validate_signature(
            self.config["auth_token"], self.signed_url(inbound), params, inbound.headers.get("x-twilio-signature")
        )

    def decode(self, inbound: Inbound, body: bytes) -> Dict[str, str]:
        """The form parameters (repeated names: the last value)."""
        content_type = (inbound.headers.get("content-type") or FORM_TYPE).split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            raise BadPayload(f"expected {FORM_TYPE}, got {content_type}")
        return dict(form_pairs(body, strict=True))

    def voice_request(self, inbound: Inbound, form: Dict[str, str]) -> VoiceRequest:
        """CallSid, the caller, and SpeechResult/Confidence/Digits or CallStatus."""
        call_id = (form.get("CallSid") or "").strip()
        if not call_id:
            raise BadPayload("the form has no CallSid")
        route = inbound.route if inbound.route in (EVENT_CALL, "input", EVENT_STATUS) else EVENT_CALL
        status = (form.get("CallStatus") or "").strip().lower()
        if route == EVENT_CALL and status in STATUS_EVENTS and "SpeechResult" not in form and "Digits" not in form:
            route = EVENT_STATUS  # a status callback pointed at the call URL
        if route == EVENT_STATUS and not status:
            raise BadPayload("a status callback needs CallStatus")
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
            turn=_turn(inbound),
            duration=_number(form.get("CallDuration")),
        )

    # ---------------------------------------------------------------- rendering

    def render(self, inbound: Inbound, prompt: Prompt, action_url: str) -> str:
        """TwiML: ``<Say>`` inside ``<Gather>``, or ``<Say>`` and ``<Hangup/>``."""
        say = {"voice": self.config["voice"], "language": self.config["language"]}
        gather = {
            "input": "speech dtmf",
            "barge_in": True,
            "speech_timeout": self.config["speech_timeout"],
            "timeout": self.config["input_timeout"],
            "language": self.config["language"],
        }
        notice = None
        if recording.starts_here(action_url):
            notice = recording.notice()
            form = self.decode(inbound, inbound.body)
            voice = self.voice_request(inbound, form)
            user_id, _ = caller_identity(voice.caller, voice.call_id)
            recording.record_notice(self.name(), user_id, voice.call_id, self.redis_client())
        return twiml(prompt, action_url=action_url, say=say, gather=gather, recording_notice=notice)

    def status_body(self) -> str:
        """An empty TwiML response."""
        return VoiceResponse().to_xml()


def sign_request(auth_token: str, url: str, params: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """Headers for posting ``params`` to ``url`` as Twilio would (tests, benchmarks)."""
    return {"Content-Type": FORM_TYPE, "X-Twilio-Signature": compute_signature(auth_token, url, params)}
