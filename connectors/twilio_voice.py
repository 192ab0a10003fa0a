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

Outbound calls (``place_call``, see ``connectors.voice.outbound``): ``account_sid``
(``TWILIO_ACCOUNT_SID``), ``caller_number`` (``TWILIO_CALLER_NUMBER``, the
``From``) and ``public_base_url`` are needed, ``api_base`` (``TWILIO_API_BASE``)
points at the REST API. The call is created with the official library
(``client.calls.create_async``: ``POST {api base}/2010-04-01/Accounts/{sid}/Calls.json``,
form-encoded, basic auth), whose HTTP layer is Threadline's ``OutboundSender``
(``SenderHttpClient``): the library's own async client neither retries a 429
after its ``Retry-After`` nor lets us read that header from the error it raises.
The answer webhook is ``POST /outbound?token=...``, signed like the others.
"""
import base64
import contextvars
import json
import logging
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, urlencode

from rasa.shared.exceptions import RasaException
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient
from twilio.twiml import TwiML
from twilio.twiml.voice_response import Gather, Say, VoiceResponse

from connectors import recording
from connectors.base import BadPayload, Inbound
from connectors.outbound import OutboundResult, OutboundSender
from connectors.voice.calls import caller_identity
from connectors.voice import (
    EVENT_CALL,
    EVENT_STATUS,
    Prompt,
    VoiceInput,
    VoiceOutput,
    VoiceRequest,
)
from connectors.voice import outbound
from connectors.voice.calls import CallState
from connectors.voice.outbound import PlacedCall
from threadline import consent
from threadline import settings as settings_module

logger = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
# Status callbacks asked for on outbound calls ("completed" also reports busy, no-answer, failed).
OUTBOUND_STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
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


class SenderHttpClient(HttpClient):
    """The twilio library's async HTTP layer, on Threadline's ``OutboundSender``.

    The library builds the request (URL, form fields, auth) and parses the
    answer; the sender sends it with the shared timeouts, retries and
    ``Retry-After`` handling. ``last_result`` is the sender's result of the
    current task's last request (the library's exceptions carry no headers).
    """

    def __init__(self, sender: OutboundSender) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), True, None)
        self.sender = sender
        self._last: contextvars.ContextVar = contextvars.ContextVar("twilio_last_result", default=None)

    @property
    def last_result(self) -> Optional[OutboundResult]:
        """The result of this task's last request, if any."""
        return self._last.get()

    async def request(
        self,
        method: str,
        url: str,
        params: Optional[Dict[str, object]] = None,
        data: Optional[Dict[str, object]] = None,
        headers: Optional[Dict[str, str]] = None,
        auth: Optional[Tuple[str, str]] = None,
        timeout: Optional[float] = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        """POST ``data`` form-encoded (repeated names for lists); other methods are not used."""
        if method.upper() != "POST":
            raise TwilioException(f"only POST is supported here, not {method}")
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        if params:
            url = f"{url}?{urlencode(params, doseq=True)}"
        fields = [(str(name), str(item)) for name, value in (data or {}).items()
                  for item in (value if isinstance(value, (list, tuple)) else [value])]
        result = await self.sender.post(url, fields, headers, record=False, form=True)
        self._last.set(result)
        if result.status is None:
            raise TwilioException(result.error or "no answer from the Twilio API")
        body = result.json
        text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
        return TwilioResponse(result.status, text)


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
        "account_sid": "TWILIO_ACCOUNT_SID",
        "api_base": "TWILIO_API_BASE",
        "caller_number": "TWILIO_CALLER_NUMBER",
    }
    credential_defaults = {
        "account_sid": "",
        "api_base": settings_module.VARIABLES["TWILIO_API_BASE"].default,
        "caller_number": "",
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
        self._rest: Optional[Tuple[TwilioClient, SenderHttpClient]] = None

    # ----------------------------------------------------------- outbound calls

    def outbound_settings(self) -> Dict[str, Optional[str]]:
        """Account SID and caller number (the public base URL is checked by ``place_call``)."""
        return {"TWILIO_ACCOUNT_SID": self.config.get("account_sid"),
                "TWILIO_CALLER_NUMBER": self.config.get("caller_number")}

    def outbound_secrets(self) -> List[str]:
        """The auth token, masked in every error and log line."""
        return [self.config["auth_token"]]

    def rest_client(self) -> Tuple[TwilioClient, SenderHttpClient]:
        """The twilio library's client, at ``api_base``, sending through the call sender."""
        if self._rest is None:
            http = SenderHttpClient(self.call_sender)
            # environment={}: the library must not read TWILIO_EDGE/REGION behind the settings' back.
            client = TwilioClient(self.config["account_sid"], self.config["auth_token"], http_client=http,
                                  environment={})
            client.api.base_url = self.config["api_base"].rstrip("/")
            self._rest = (client, http)
        return self._rest

    async def request_call(self, number: str, answer_url: str, status_url: str, context: Dict[str, str]) -> PlacedCall:
        """``calls.create_async``: To, From, Url (POST), StatusCallback and its events."""
        client, http = self.rest_client()
        try:
            created = await client.calls.create_async(
                to=number, from_=self.config["caller_number"], url=answer_url, method="POST",
                status_callback=status_url, status_callback_method="POST",
                status_callback_event=list(OUTBOUND_STATUS_EVENTS),
            )
        except TwilioRestException as exc:
            result = http.last_result
            detail = result.error if result is not None and result.error else f"HTTP {exc.status}: {exc.msg}"
            return PlacedCall(False, status=exc.status, error=self.call_sender.redact(detail),
                              retry_after=result.retry_after if result is not None and exc.status == 429 else None)
        except TwilioException as exc:
            return PlacedCall(False, error=self.call_sender.redact(str(exc)))
        result = http.last_result
        return PlacedCall(True, call_id=created.sid, status=result.status if result is not None else None)

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
            self._record_notice(user_id, voice.call_id)
        return twiml(prompt, action_url=action_url, say=say, gather=gather, recording_notice=notice)

    def _record_notice(self, user_id: str, call_id: str) -> None:
        """The recording notice in the ledger: for the customer an outbound call is bound to, else the caller's."""
        redis = self.redis_client()
        state = CallState.load(redis, self.name(), call_id)
        if not (state.customer_id and state.origin == outbound.ORIGIN):
            recording.record_notice(self.name(), user_id, call_id, redis)
            return
        try:
            consent.record(state.customer_id, self.name(), consent.RECORDING, consent.GRANTED, consent.SOURCE_NOTICE,
                           call_id, redis)
        except Exception:
            logger.exception("%s call %s: could not record the recording notice", self.name(), call_id)

    def status_body(self) -> str:
        """An empty TwiML response."""
        return VoiceResponse().to_xml()


def sign_request(auth_token: str, url: str, params: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """Headers for posting ``params`` to ``url`` as Twilio would (tests, benchmarks)."""
    return {"Content-Type": FORM_TYPE, "X-Twilio-Signature": compute_signature(auth_token, url, params)}
