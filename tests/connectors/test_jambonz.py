"""jambonz: webhook signatures and basic auth, and the call flow over real HTTP."""
import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from connectors import voice
from connectors.jambonz import JambonzInput, compute_signature, signature_header, verify_signature
from tests.connectors.harness import EchoAgent, serve_channel
from tests.connectors.test_twilio_voice import CALLER, bot
from tests.connectors.test_voice_checks import assert_valid_jambonz

SECRET = "wh_secret_for_tests"
BODY = b'{"call_sid":"abc","from":"+14155552671"}'

# -------------------------------------------------------------------- signatures


def test_signature_is_stripe_like_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, 1700000000, BODY) == expected
    assert signature_header(SECRET, BODY, 1700000000) == f"t=1700000000,v1={expected}"


def test_a_fresh_signature_verifies():
    now = 1700000000
    header = signature_header(SECRET, BODY, now)
    assert verify_signature(header, BODY, SECRET, now=now)
    assert verify_signature(header, BODY, SECRET, now=now + 299)
    assert verify_signature(header, BODY, SECRET, now=now - 299)  # a little clock skew


@pytest.mark.parametrize(
    "header, body, secret, now",
    [
        (None, BODY, SECRET, 1700000000),
        ("", BODY, SECRET, 1700000000),
        ("t=1700000000", BODY, SECRET, 1700000000),
        ("v1=" + "0" * 64, BODY, SECRET, 1700000000),
        ("t=abc,v1=" + "0" * 64, BODY, SECRET, 1700000000),
        ("t=\u00b2,v1=" + "0" * 64, BODY, SECRET, 1700000000),   # a digit to str.isdigit, not to int()
        ("t=1700000000,v1=" + "\u00e9" * 64, BODY, SECRET, 1700000000),
        ("SIGNED", BODY, SECRET, 1700000000),
        ("GOOD", BODY + b" ", SECRET, 1700000000),        # body changed
        ("GOOD", BODY, "another-secret", 1700000000),      # wrong secret
        ("GOOD", BODY, SECRET, 1700000000 + 301),          # replayed too late
        ("GOOD", BODY, SECRET, 1700000000 - 301),          # from the future
        ("GOOD_V0", BODY, SECRET, 1700000000),             # other scheme
    ],
)
def test_bad_signatures_fail(header, body, secret, now):
    good = compute_signature(SECRET, 1700000000, BODY)
    header = {"GOOD": f"t=1700000000,v1={good}", "GOOD_V0": f"t=1700000000,v0={good}",
              "SIGNED": good}.get(header, header)
    assert not verify_signature(header, body, secret, now=now)


def test_any_of_several_v1_signatures_may_match():
    good = compute_signature(SECRET, 1700000000, BODY)
    header = f"t=1700000000,v1={'f' * 64},v1={good.upper()}"
    assert verify_signature(header, BODY, SECRET, now=1700000000)


def test_settings_are_checked(monkeypatch):
    monkeypatch.delenv("JAMBONZ_WEBHOOK_SECRET", raising=False)
    off = JambonzInput.from_credentials({})
    assert off.missing == ["JAMBONZ_WEBHOOK_SECRET"]  # off, saying what to set
    monkeypatch.setenv("JAMBONZ_BASIC_AUTH_USER", "jambonz")
    monkeypatch.delenv("JAMBONZ_BASIC_AUTH_PASSWORD", raising=False)
    with pytest.raises(Exception, match="JAMBONZ_BASIC_AUTH_PASSWORD"):
        JambonzInput.from_credentials({"webhook_secret": SECRET})


# --------------------------------------------------------------------------- HTTP


class Caller:
    """Posts signed jambonz webhooks and checks the verbs that come back."""

    def __init__(self, served, sid="9f2d7b0e-call", caller=CALLER):
        self.served, self.sid, self.caller = served, sid, caller
        self.reply = None

    def info(self, **extra):
        return {"call_sid": self.sid, "from": self.caller, "to": "+18005551212", "direction": "inbound",
                "call_status": "in-progress", "account_sid": "acc", **extra}

    def post(self, path_or_url, payload, headers=None):
        url = path_or_url if path_or_url.startswith("http") else self.served.url + path_or_url
        body = json.dumps(payload).encode()
        if headers is None:
            headers = {"Jambonz-Signature": signature_header(SECRET, body)}
        self.reply = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)
        return self.reply

    @property
    def verbs(self):
        assert self.reply.status_code == 200, self.reply.text
        assert self.reply.headers["content-type"].startswith("application/json")
        return assert_valid_jambonz(self.reply.text)

    @property
    def heard(self):
        texts = [v.get("text") or v.get("say", {}).get("text", "") for v in self.verbs]
        return voice.spoken_preview(" ".join(t[len("<speak>"):-len("</speak>")] for t in texts if t))

    def ring(self):
        return self.post("/webhook", self.info())

    def answer(self, **fields):
        return self.post(self.verbs[-1]["actionHook"], self.info(**fields))


@pytest.fixture
def served(redis):
    channel = JambonzInput.from_credentials({"webhook_secret": SECRET})
    with serve_channel(channel, EchoAgent(bot)) as running:
        yield running


@pytest.mark.services
def test_a_call_is_answered_with_a_gather_and_ssml(served):
    call = Caller(served)
    call.ring()
    (gather,) = call.verbs
    assert gather["verb"] == "gather" and gather["input"] == ["speech", "digits"]
    assert gather["bargein"] is True and gather["dtmfBargein"] is True and gather["numDigits"] == 1
    assert gather["actionHook"] == f"{served.server.url}/webhooks/jambonz/gather?turn=1"
    assert gather["recognizer"] == {"vendor": "default", "language": "en-US",
                                    "hints": ["track an order", "book an appointment"]}
    assert gather["say"]["text"].startswith("<speak>") and "press 1 or say track an order" in call.heard
    (message,) = served.agent.messages
    assert message.text == "/greet" and message.metadata["channel"] == "jambonz"
    assert message.metadata["trust"] == "low" and message.metadata["channel_user_id"] == CALLER


@pytest.mark.services
def test_speech_digits_and_choices_reach_the_bot(served, redis):
    call = Caller(served)
    call.ring()
    speech = {"is_final": True, "alternatives": [{"transcript": "where is my order", "confidence": 0.31}]}
    call.answer(reason="speechDetected", speech=speech)
    message = served.agent.messages[-1]
    assert message.text == "where is my order" and message.metadata["speech_confidence"] == pytest.approx(0.31)
    assert [e["kind"] for e in voice.read_events(redis, call.sid)] == ["low_confidence", "barge_in"]
    call.answer(reason="dtmfDetected", digits="482913")
    assert served.agent.messages[-1].text == "482913"
    assert '<say-as interpret-as="digits">482913</say-as>' in call.verbs[0]["say"]["text"]
    assert call.verbs[0]["finishOnKey"] == "#" and "numDigits" not in call.verbs[0]
    call.answer(reason="dtmfDetected", digits="0")
    assert served.agent.messages[-1].text == "/request_human"


@pytest.mark.services
def test_timeouts_reprompt_then_hang_up(served, redis):
    call = Caller(served)
    call.ring()
    call.answer(reason="timeout")
    assert call.heard.startswith("Sorry, I didn't catch that.") and call.verbs[0]["verb"] == "gather"
    call.answer(reason="timeout")
    assert [v["verb"] for v in call.verbs] == ["say", "hangup"]
    assert call.post("/status", call.info(call_status="completed", duration=20)).json() == {}
    kinds = [e["kind"] for e in voice.read_events(redis, call.sid)]
    assert kinds == ["no_input", "no_input", "call_completed"]
    stored = redis.hgetall(voice.CallState.key("jambonz", call.sid))
    assert stored[b"status"] == b"completed" and stored[b"ended_by"] == b"bot"


@pytest.mark.services
def test_a_caller_hanging_up_is_not_a_completed_conversation(served, redis):
    call = Caller(served)
    call.ring()
    call.post("/status", call.info(call_status="completed", duration=4))
    assert [e["kind"] for e in voice.read_events(redis, call.sid)] == ["caller_hangup", "call_completed"]


@pytest.mark.services
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Jambonz-Signature": signature_header("wrong-secret", b"{}")},
        {"Jambonz-Signature": signature_header(SECRET, b"{}", timestamp=int(time.time()) - 3600)},
        {"Authorization": "Basic " + base64.b64encode(b"jambonz:guess").decode()},
        {"Jambonz-Signature": "t=\u00b2,v1=" + "0" * 64},
        {"Authorization": "Basic \u00e9\u00e9"},
    ],
)
def test_unauthenticated_requests_are_refused(served, headers):
    call = Caller(served)
    assert call.post("/webhook", call.info(), headers=headers).status_code == 403
    assert served.agent.messages == []


@pytest.mark.services
def test_a_malformed_body_is_a_bad_request(served):
    for body in (b"not json", b"[1, 2]", b'{"from": "+14155552671"}'):
        headers = {"Content-Type": "application/json", "Jambonz-Signature": signature_header(SECRET, body)}
        assert requests.post(served.url + "/webhook", data=body, headers=headers, timeout=30).status_code == 400


@pytest.mark.services
def test_basic_auth_for_self_hosted_deployments(redis):
    channel = JambonzInput.from_credentials(
        {"webhook_secret": SECRET, "basic_auth_user": "jambonz", "basic_auth_password": "s3cret"})
    with serve_channel(channel, EchoAgent(bot)) as running:
        call = Caller(running)
        good = {"Authorization": "Basic " + base64.b64encode(b"jambonz:s3cret").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"jambonz:s3cre").decode()}
        assert call.post("/webhook", call.info(), headers=bad).status_code == 403
        assert call.post("/webhook", call.info(), headers=good).status_code == 200
        assert call.verbs[0]["verb"] == "gather"
        assert call.post("/webhook", call.info(), headers={"Authorization": "Basic !!!"}).status_code == 403
