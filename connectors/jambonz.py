"""jambonz (``jambonz``): phone calls answered with jambonz webhook verbs (JSON).

Routes under ``/webhooks/jambonz/`` (see ``connectors.voice`` for the flow):

``POST /webhook``  the application's calling webhook (call_sid, from, to, ...)
``POST /gather``   the ``gather`` verb's actionHook: ``reason`` speechDetected
                   (``speech.alternatives[0].transcript``/``confidence``),
                   dtmfDetected (``digits``), timeout, or error
``POST /status``   the application's call status webhook (``call_status``)

Authenticity, as jambonz documents it: the hosted platform signs every
request with ``Jambonz-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" under the webhook secret>`` (several ``v1`` entries may be
present while a secret is rotated; any one matching is enough) and the
timestamp must be within five minutes of now. Self-hosted deployments may
use HTTP basic auth instead (``JAMBONZ_BASIC_AUTH_USER``/``PASSWORD``); a
request passes with either.

Replies are verb arrays: ``gather`` (``input: ["speech", "digits"]``,
``bargein: true``) with a nested ``say`` whose text is SSML, or ``say`` then
``hangup``.

Settings (credentials.yml keys, else environment): ``webhook_secret``
(``JAMBONZ_WEBHOOK_SECRET``, required), ``basic_auth_user`` /
``basic_auth_password``, ``public_base_url`` (``JAMBONZ_PUBLIC_BASE_URL``),
``language`` (``JAMBONZ_LANGUAGE``, en-US), ``voice`` (``JAMBONZ_VOICE``, the
application's default when empty), ``input_timeout`` (``JAMBONZ_INPUT_TIMEOUT``).

Outbound calls (``place_call``, see ``connectors.voice.outbound``): the REST
createCall, ``POST {api base}/v1/Accounts/{account sid}/Calls`` with
``Authorization: Bearer <api key>`` and JSON ``from``, ``to`` (``{"type":
"phone", "number": ...}``), ``call_hook`` (the answer webhook ``/outbound?token=...``),
``call_status_hook`` (``/status``), ``application_sid`` when set and ``tag``
(the call's context); jambonz answers 201 with the call's ``sid``. With basic
auth configured, both hooks carry the credentials so jambonz authenticates to
us. Settings: ``api_base`` (``JAMBONZ_API_BASE``), ``account_sid``
(``JAMBONZ_ACCOUNT_SID``), ``api_key`` (``JAMBONZ_API_KEY``), ``caller_number``
(``JAMBONZ_CALLER_NUMBER``), ``application_sid`` (``JAMBONZ_APPLICATION_SID``)
and ``public_base_url``.
"""
import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Dict, List, Optional

from rasa.shared.exceptions import RasaException

from connectors import shape
from connectors.base import BadPayload, Inbound, constant_time_equals
from connectors.voice.outbound import PlacedCall
from threadline import settings as settings_module
from connectors.voice import (
    EVENT_CALL,
    EVENT_INPUT,
    EVENT_STATUS,
    Prompt,
    VoiceInput,
    VoiceOutput,
    VoiceRequest,
)

SIGNATURE_HEADER = "Jambonz-Signature"
SIGNATURE_SCHEME = "v1"
SIGNATURE_TOLERANCE = 300
STATUS_EVENTS = frozenset({"completed", "failed", "busy", "no-answer"})


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: Optional[int] = None) -> str:
    """The ``Jambonz-Signature`` value jambonz sends for ``body`` (tests, benchmarks)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},{SIGNATURE_SCHEME}={compute_signature(secret, timestamp, body)}"


def verify_signature(
    header: Optional[str], body: bytes, secret: str, *, tolerance: int = SIGNATURE_TOLERANCE, now: Optional[float] = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` seconds."""
    if not header or not secret:
        return False
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == SIGNATURE_SCHEME and value:
            signatures.append(value.lower())
    if not timestamp or not (timestamp.isascii() and timestamp.isdigit()) or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = compute_signature(secret, int(timestamp), body).encode("ascii")
    return any(s.isascii() and hmac.compare_digest(expected, s.encode("ascii")) for s in signatures)


def _basic_credentials(header: Optional[str]) -> Optional[tuple]:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _first_alternative(speech: Any) -> Dict[str, Any]:
    if isinstance(speech, dict) and isinstance(speech.get("alternatives"), list) and speech["alternatives"]:
        first = speech["alternatives"][0]
        return first if isinstance(first, dict) else {}
    return {}


def _number(value: Any) -> Optional[float]:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class JambonzOutput(VoiceOutput):
    """Collects the bot's responses to one jambonz webhook."""

    channel = "jambonz"


class JambonzInput(VoiceInput):
    """Answers jambonz calls (settings: see the module docstring)."""

    channel = "jambonz"
    output_class = JambonzOutput
    content_type = "application/json"
    terminal_statuses = STATUS_EVENTS
    credential_env = {
        "webhook_secret": "JAMBONZ_WEBHOOK_SECRET",
        "basic_auth_user": "JAMBONZ_BASIC_AUTH_USER",
        "basic_auth_password": "JAMBONZ_BASIC_AUTH_PASSWORD",
        "public_base_url": "JAMBONZ_PUBLIC_BASE_URL",
        "language": "JAMBONZ_LANGUAGE",
        "voice": "JAMBONZ_VOICE",
        "input_timeout": "JAMBONZ_INPUT_TIMEOUT",
        "api_base": "JAMBONZ_API_BASE",
        "account_sid": "JAMBONZ_ACCOUNT_SID",
        "api_key": "JAMBONZ_API_KEY",
        "caller_number": "JAMBONZ_CALLER_NUMBER",
        "application_sid": "JAMBONZ_APPLICATION_SID",
    }
    credential_defaults = {
        "api_base": settings_module.VARIABLES["JAMBONZ_API_BASE"].default,
        "account_sid": "",
        "api_key": "",
        "caller_number": "",
        "application_sid": "",
        "basic_auth_user": "",
        "basic_auth_password": "",
        "public_base_url": "",
        "language": "en-US",
        "voice": "",
        "input_timeout": "8",
    }

    def __init__(self, config: Dict[str, str], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if bool(self.config["basic_auth_user"]) != bool(self.config["basic_auth_password"]):
            raise RasaException(
                "The jambonz channel needs both JAMBONZ_BASIC_AUTH_USER and JAMBONZ_BASIC_AUTH_PASSWORD, or neither."
            )
        if not self.config["input_timeout"].strip().isdigit():
            raise RasaException("jambonz: input_timeout must be whole seconds")

    # ----------------------------------------------------------- outbound calls

    def outbound_settings(self) -> Dict[str, Optional[str]]:
        """Account SID, API key and caller number (the public base URL is checked by ``place_call``)."""
        return {"JAMBONZ_ACCOUNT_SID": self.config.get("account_sid"),
                "JAMBONZ_API_KEY": self.config.get("api_key"),
                "JAMBONZ_CALLER_NUMBER": self.config.get("caller_number")}

    def outbound_secrets(self) -> List[str]:
        """The API key (and the basic-auth password the hooks carry), masked in errors and logs."""
        return [self.config.get("api_key") or "", self.config.get("basic_auth_password") or ""]

    def _hook(self, url: str) -> Dict[str, str]:
        hook = {"url": url, "method": "POST"}
        if self.config["basic_auth_user"]:
            hook.update(username=self.config["basic_auth_user"], password=self.config["basic_auth_password"])
        return hook

    async def request_call(self, number: str, answer_url: str, status_url: str, context: Dict[str, str]) -> PlacedCall:
        """createCall through the shared sender (a 429 is retried, its ``Retry-After`` reported)."""
        body: Dict[str, Any] = {
            "from": self.config["caller_number"],
            "to": {"type": "phone", "number": number},
            "call_hook": self._hook(answer_url),
            "call_status_hook": self._hook(status_url),
        }
        if self.config["application_sid"]:
            body["application_sid"] = self.config["application_sid"]
        if context:
            body["tag"] = dict(context)
        url = f"{self.config['api_base'].rstrip('/')}/v1/Accounts/{self.config['account_sid']}/Calls"
        result = await self.call_sender.post(url, body, {"Authorization": f"Bearer {self.config['api_key']}"},
                                             record=False)
        if not result.ok:
            return PlacedCall(False, status=result.status, error=result.error,
                              retry_after=result.retry_after if result.status == 429 else None)
        sid = result.json.get("sid") if isinstance(result.json, dict) else None
        return PlacedCall(True, call_id=str(sid) if sid else None, status=result.status)

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """A valid ``Jambonz-Signature``, or the configured basic-auth credentials."""
        if verify_signature(inbound.headers.get(SIGNATURE_HEADER), body, self.config["webhook_secret"]):
            return True
        user = self.config["basic_auth_user"]
        given = _basic_credentials(inbound.headers.get("authorization"))
        if not user or given is None:
            return False
        user_ok = constant_time_equals(given[0], user)
        password_ok = constant_time_equals(given[1], self.config["basic_auth_password"])
        return user_ok and password_ok

    def decode(self, inbound: Inbound, body: bytes) -> Dict[str, Any]:
        """The JSON object jambonz posts."""
        payload = super().decode(inbound, body)
        if not isinstance(payload, dict):
            raise BadPayload("expected a JSON object")
        return payload

    def voice_request(self, inbound: Inbound, payload: Dict[str, Any]) -> VoiceRequest:
        """call_sid, the caller, and speech/digits/reason or call_status."""
        call_id = (shape.member(payload, "call_sid", str, "") or "").strip()
        if not call_id:
            raise BadPayload("the request has no call_sid")
        for name in ("from", "to", "direction", "digits", "reason"):
            shape.member(payload, name, str, "")
        route = inbound.route if inbound.route in (EVENT_CALL, EVENT_INPUT, EVENT_STATUS) else EVENT_CALL
        status = (shape.member(payload, "call_status", str, "") or "").strip().lower()
        if route == EVENT_CALL and status in STATUS_EVENTS and "reason" not in payload:
            route = EVENT_STATUS
        if route == EVENT_STATUS and not status:
            raise BadPayload("a status webhook needs call_status")
        best = _first_alternative(shape.member(payload, "speech", dict, "")) if route == EVENT_INPUT else {}
        outbound = str(payload.get("direction") or "").startswith("outbound")
        turn = inbound.arg("turn")
        return VoiceRequest(
            event=route,
            call_id=call_id,
            caller=str(payload.get("to" if outbound else "from") or "") or None,
            called=str(payload.get("from" if outbound else "to") or "") or None,
            speech=str(best.get("transcript") or "") or None,
            confidence=_number(best.get("confidence")),
            digits=str(payload.get("digits") or "") or None if route == EVENT_INPUT else None,
            status=status or None,
            reason=payload.get("reason"),
            turn=int(turn) if turn and turn.isascii() and turn.isdigit() else None,
            duration=_number(payload.get("duration")),
        )

    def render(self, inbound: Inbound, prompt: Prompt, action_url: str) -> str:
        """Verbs: ``gather`` with a nested SSML ``say``, or ``say`` and ``hangup``."""
        say: Dict[str, Any] = {"text": prompt.ssml}
        if self.config["voice"]:
            say["synthesizer"] = {"voice": self.config["voice"], "language": self.config["language"]}
        verbs: List[Dict[str, Any]] = []
        if prompt.transfer_to:
            target = prompt.transfer_to
            dial_target = {"type": "sip", "sipUri": target} if target.startswith("sip:") else {"type": "phone", "number": target}
            if prompt.fragment:
                verbs.append({"verb": "say", **say})
            verbs.append({"verb": "dial", "target": [dial_target], "answerOnBridge": True})
            return json.dumps(verbs)
        if prompt.hangup:
            if prompt.fragment:
                verbs.append({"verb": "say", **say})
            verbs.append({"verb": "hangup"})
            return json.dumps(verbs)
        gather: Dict[str, Any] = {
            "verb": "gather",
            "input": ["speech", "digits"],
            "bargein": True,
            "dtmfBargein": True,
            "actionHook": action_url,
            "timeout": int(self.config["input_timeout"]),
            "recognizer": {"vendor": "default", "language": self.config["language"]},
        }
        if prompt.choices:
            gather["numDigits"] = 1
        else:
            gather.update(finishOnKey="#", interDigitTimeout=3)
        if prompt.hints:
            gather["recognizer"]["hints"] = prompt.hints
        if prompt.fragment:
            gather["say"] = say
        verbs.append(gather)
        return json.dumps(verbs)

    def status_body(self) -> str:
        """jambonz ignores the answer to a status webhook."""
        return "{}"
