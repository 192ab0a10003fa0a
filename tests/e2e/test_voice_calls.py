"""Phone calls through the real rasa server and action server (Twilio and jambonz webhooks).

Every TwiML document and jambonz verb array the server returns is checked
against the platform's structure, and every SSML string as well-formed XML.
"""
import json
import random
import uuid
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
import requests

from connectors import voice
from connectors.jambonz import signature_header
from connectors.twilio_voice import sign_request
from tests.conftest import TEST_SECRETS
from tests.connectors.test_voice_checks import assert_valid_jambonz, assert_valid_twiml, gather_of, say_ssml
from tests.support.payloads import signed_whatsapp_request, whatsapp_text_payload

pytestmark = [pytest.mark.e2e, pytest.mark.services]

AUTH_TOKEN = TEST_SECRETS["TWILIO_AUTH_TOKEN"]
JAMBONZ_SECRET = TEST_SECRETS["JAMBONZ_WEBHOOK_SECRET"]


def new_number() -> str:
    """A valid, unused US number (San Francisco, 555 exchange)."""
    return f"+1415555{random.randint(0, 9999):04d}"


def events_of(stack, call_id):
    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    return [e["kind"] for e in voice.read_events(client, call_id)]


class TwilioCall:
    """One caller on the Twilio webhooks: each step posts a signed request and checks the TwiML."""

    def __init__(self, stack, caller=None):
        self.base = f"{stack.rasa_url}/webhooks/twilio_voice"
        self.caller = caller or new_number()
        self.sid = "CA" + uuid.uuid4().hex
        self.root = None

    def post(self, url, params):
        params = [(k, v) for k, v in params if v is not None]
        reply = requests.post(url, data=params, headers=sign_request(AUTH_TOKEN, url, params), timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/xml")
        self.root = assert_valid_twiml(reply.content)
        return self.root

    def ring(self):
        return self.post(f"{self.base}/webhook", [("CallSid", self.sid), ("From", self.caller),
                                                  ("To", "+18005551212"), ("CallStatus", "ringing"),
                                                  ("Direction", "inbound")])

    @property
    def action(self):
        action = gather_of(self.root).get("action")
        assert urlsplit(action).path == "/webhooks/twilio_voice/gather"
        return action

    def say(self, text, confidence="0.91"):
        return self.post(self.action, [("CallSid", self.sid), ("From", self.caller), ("SpeechResult", text),
                                       ("Confidence", confidence)])

    def press(self, digits):
        return self.post(self.action, [("CallSid", self.sid), ("From", self.caller), ("Digits", digits)])

    def silence(self):
        return self.post(self.action, [("CallSid", self.sid), ("From", self.caller)])

    def status(self, status, duration="42"):
        url = f"{self.base}/status"
        params = [("CallSid", self.sid), ("CallStatus", status), ("CallDuration", duration)]
        reply = requests.post(url, data=params, headers=sign_request(AUTH_TOKEN, url, params), timeout=30)
        assert reply.status_code == 200, reply.text
        return reply

    @property
    def ssml(self):
        return say_ssml(self.root)

    @property
    def heard(self):
        return voice.spoken_preview(self.ssml)


def test_order_status_by_voice_and_keypad(stack):
    call = TwilioCall(stack)
    call.ring()
    assert "Threadline" in call.heard
    assert "press 1 or say track an order" in call.heard
    assert gather_of(call.root).get("input") == "speech dtmf"
    assert gather_of(call.root).get("bargeIn") == "true"
    call.say("where is my order")
    assert "order number" in call.heard
    call.press("482913")
    assert '<say-as interpret-as="digits">482913</say-as> is on its way' in call.ssml
    assert "Order 4 8 2 9 1 3 is on its way" in call.heard
    assert "**" not in call.ssml
    call.status("completed")
    kinds = events_of(stack, call.sid)
    assert "caller_hangup" in kinds and "call_completed" in kinds


def test_keypad_choice_maps_to_the_button_payload(stack):
    call = TwilioCall(stack)
    call.ring()
    call.press("1")  # "Track an order" -> /check_order
    assert "order number" in call.heard


def test_keypad_zero_transfers_the_call_after_the_case_is_opened(stack):
    from threadline.db import cases

    call = TwilioCall(stack)
    call.ring()
    call.press("0")
    assert "connecting you with a member of our team" in call.heard
    dial = call.root.find("Dial")
    assert dial is not None and dial.find("Number").text == TEST_SECRETS["VOICE_TRANSFER_TO"]
    assert call.root.find("Gather") is None
    assert "transferred" in events_of(stack, call.sid)
    # The context package is on the desk before the call connects.
    events = voice.read_events(redis_lib.Redis.from_url(stack.env["REDIS_URL"]), call.sid)
    customer = next(e["customer_id"] for e in events if e.get("customer_id"))
    requests_ = cases.handoff_requests(customer)
    assert requests_ and requests_[-1]["status"] == "queued" and requests_[-1]["context"]["reason"]


def test_a_whatsapp_conversation_continues_on_the_phone_with_low_trust(stack):
    number = new_number()
    body, headers = signed_whatsapp_request(
        whatsapp_text_payload(number.lstrip("+"), "where is my order", f"wamid.{uuid.uuid4().hex}"),
        TEST_SECRETS["WHATSAPP_APP_SECRET"],
    )
    reply = requests.post(f"{stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text

    call = TwilioCall(stack, caller=number)
    call.ring()
    # The greeting is a digression from the open form: it names the task, not the order.
    assert "checking one of your orders" in call.heard or "checking an order" in call.heard
    assert "whatsapp" in call.heard.lower()
    assert "order number" in call.heard
    call.press("482913")
    # The status, but not the tracking details: a caller id is not proof of identity.
    assert "is on its way" in call.heard and "postal code" in call.heard and "UPS" not in call.heard
    call.press("94105")
    assert "UPS" in call.heard
    # Step-up holds for the rest of this call: the address needs no second proof.
    call.say("what address is it going to")
    assert "221 Mission Street" in call.heard


def test_barge_in_is_recorded_and_not_counted_as_a_dropped_call(stack):
    call = TwilioCall(stack)
    call.ring()  # a long greeting with choices
    call.say("where is my order")  # answered at once: the greeting cannot have finished
    assert "order number" in call.heard
    kinds = events_of(stack, call.sid)
    assert kinds.count("barge_in") == 1
    assert "caller_hangup" not in kinds


def test_low_confidence_speech_is_recorded(stack):
    call = TwilioCall(stack)
    call.ring()
    call.say("where is my order", confidence="0.21")
    assert "low_confidence" in events_of(stack, call.sid)


def test_no_input_reprompts_once_then_says_goodbye_and_hangs_up(stack):
    call = TwilioCall(stack)
    call.ring()
    first = call.heard
    call.silence()
    assert call.heard.startswith("Sorry, I didn't catch that.")
    assert "press 1 or say track an order" in call.heard and first.split(".")[0] in call.heard
    call.silence()
    assert call.root.find("Gather") is None
    assert [child.tag for child in call.root] == ["Say", "Hangup"]
    assert "goodbye" in call.heard.lower()
    call.status("completed")
    kinds = events_of(stack, call.sid)
    assert kinds.count("no_input") == 2
    assert "caller_hangup" not in kinds and "call_completed" in kinds


def test_status_callbacks_are_recorded_per_call(stack):
    call = TwilioCall(stack)
    call.status("busy")
    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    stored = client.hgetall(voice.CallState.key("twilio_voice", call.sid))
    assert stored[b"status"] == b"busy" and b"status:busy" in stored
    assert events_of(stack, call.sid) == ["call_failed"]


def test_a_bad_signature_is_refused(stack):
    call = TwilioCall(stack)
    url = f"{call.base}/webhook"
    params = [("CallSid", call.sid), ("From", call.caller)]
    headers = sign_request("not-the-token", url, params)
    assert requests.post(url, data=params, headers=headers, timeout=30).status_code == 403
    assert requests.post(url, data=params, timeout=30).status_code == 403


def test_a_malformed_form_body_is_a_bad_request(stack):
    call = TwilioCall(stack)
    url = f"{call.base}/webhook"
    body = f"CallSid={call.sid}&From=%2B14155550000&broken"
    params = [("CallSid", call.sid), ("From", "+14155550000"), ("broken", "")]
    reply = requests.post(url, data=body, headers=sign_request(AUTH_TOKEN, url, params), timeout=30)
    assert reply.status_code == 400


def test_an_unknown_call_sid_on_the_action_webhook_is_answered(stack):
    call = TwilioCall(stack)
    url = f"{call.base}/gather?turn=3"
    params = [("CallSid", call.sid), ("From", call.caller), ("SpeechResult", "where is my order"),
              ("Confidence", "0.9")]
    call.post(url, params)
    assert "order number" in call.heard


# --------------------------------------------------------------------------- jambonz


class JambonzCall:
    """One caller on the jambonz webhooks (signed JSON bodies, verb arrays back)."""

    def __init__(self, stack, caller=None):
        self.base = f"{stack.rasa_url}/webhooks/jambonz"
        self.caller = caller or new_number()
        self.sid = str(uuid.uuid4())
        self.verbs = None

    def send(self, url, payload):
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Jambonz-Signature": signature_header(JAMBONZ_SECRET, body)}
        reply = requests.post(url, data=body, headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply

    def post(self, url, payload):
        reply = self.send(url, payload)
        self.verbs = assert_valid_jambonz(reply.text)
        return self.verbs

    def info(self, **extra):
        return {"call_sid": self.sid, "from": self.caller, "to": "+18005551212", "direction": "inbound",
                "call_status": "in-progress", **extra}

    def ring(self):
        return self.post(f"{self.base}/webhook", self.info())

    def status(self, status):
        return self.send(f"{self.base}/status", self.info(call_status=status, duration=31))

    @property
    def action(self):
        return self.verbs[-1]["actionHook"]

    def say(self, text, confidence=0.9):
        speech = {"is_final": True, "alternatives": [{"transcript": text, "confidence": confidence}]}
        return self.post(self.action, self.info(reason="speechDetected", speech=speech))

    def press(self, digits):
        return self.post(self.action, self.info(reason="dtmfDetected", digits=digits))

    def silence(self):
        return self.post(self.action, self.info(reason="timeout"))

    @property
    def heard(self):
        texts = [v.get("text") or v.get("say", {}).get("text", "") for v in self.verbs]
        return voice.spoken_preview(" ".join(t[len("<speak>"):-len("</speak>")] for t in texts if t))


def test_jambonz_call_checks_an_order(stack):
    call = JambonzCall(stack)
    call.ring()
    gather = call.verbs[0]
    assert gather["verb"] == "gather" and gather["input"] == ["speech", "digits"] and gather["bargein"] is True
    assert "press 1 or say track an order" in call.heard
    call.say("where is my order")
    assert "order number" in call.heard
    call.press("482913")
    assert '<say-as interpret-as="digits">482913</say-as>' in call.verbs[0]["say"]["text"]
    call.silence()
    assert call.heard.startswith("Sorry, I didn't catch that.")
    call.silence()
    assert [v["verb"] for v in call.verbs] == ["say", "hangup"]
    assert call.status("completed").status_code == 200
    kinds = events_of(stack, call.sid)
    assert "barge_in" in kinds and kinds.count("no_input") == 2 and "call_completed" in kinds


def test_jambonz_refuses_unsigned_and_stale_requests(stack):
    call = JambonzCall(stack)
    body = json.dumps(call.info()).encode()
    url = f"{call.base}/webhook"
    assert requests.post(url, data=body, timeout=30).status_code == 403
    stale = signature_header(JAMBONZ_SECRET, body, timestamp=1_600_000_000)
    assert requests.post(url, data=body, headers={"Jambonz-Signature": stale}, timeout=30).status_code == 403


def test_a_call_after_a_finished_whatsapp_check_picks_it_up_without_personal_data(stack):
    number = new_number()
    for text in ("where is my order 482913", "94105"):  # finished: status, step-up, details
        body, headers = signed_whatsapp_request(
            whatsapp_text_payload(number.lstrip("+"), text, f"wamid.{uuid.uuid4().hex}"),
            TEST_SECRETS["WHATSAPP_APP_SECRET"],
        )
        assert requests.post(f"{stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers,
                             timeout=60).status_code == 200

    call = TwilioCall(stack, caller=number)
    call.ring()
    # Named, on the channel it happened on, but no order number, carrier or date for a caller id.
    assert "checking one of your orders on WhatsApp" in call.heard
    assert "4 8 2 9 1 3" not in call.heard and "UPS" not in call.heard
    assert "postal code" in call.heard  # step-up first...
    call.press("94105")
    assert "on its way" in call.heard and "UPS" in call.heard  # ...then it goes on, nothing asked again
    assert "order number" not in call.heard
