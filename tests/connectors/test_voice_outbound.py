"""Outbound calls (``place_call``): the provider request, the answer webhook, the callee's turns.

Twilio and jambonz are the local ``Recorder``; the connector runs for real
(``serve_channel``) with Redis, and the callee's speech must reach the
conversation ``place_call`` was given, whatever the identity index says about
the number.
"""
import asyncio
import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors import voice
from connectors.jambonz import JambonzInput, signature_header
from connectors.twilio_voice import TwilioVoiceInput, sign_request
from connectors.voice import live
from connectors.voice.outbound import HANGUP_TEXT, PlacedCall
from tests.connectors.harness import EchoAgent, serve_channel
from tests.connectors.test_twilio_voice import bot
from tests.connectors.test_voice_checks import assert_valid_jambonz, assert_valid_twiml, gather_of, say_ssml
from threadline import identity

CUSTOMER = "c_outbound0000000000001"
NUMBER = "+14155550142"
PROMPT = "Hello, this is Threadline. I'm calling about the recall on your car: shall we book the workshop?"
CONTEXT = {"journey": "recall", "instance": "17", "step": "call"}

AUTH_TOKEN = "twilio-auth-token-secret"
ACCOUNT_SID = "AC" + "0" * 32
TWILIO_FROM = "+18005550100"
TWILIO_SID = "CA" + "7" * 32

WEBHOOK_SECRET = "jambonz-webhook-secret"
API_KEY = "jambonz-api-key-secret"
JAMBONZ_ACCOUNT = "3f2c1a5e-acc0-4c3e-9a1d-5b6c7d8e9f00"
JAMBONZ_FROM = "+18005550199"
JAMBONZ_SID = "6c1f7c52-outbound-call"


def place(channel, customer=CUSTOMER, number=NUMBER, prompt=PROMPT, context=CONTEXT) -> PlacedCall:
    """``place_call`` from a loop of its own, as the journey worker would await it."""

    async def run():
        try:
            return await channel.place_call(customer, number, prompt, context)
        finally:
            await channel.call_sender.close()

    return asyncio.run(run())


def other_customer_holds_the_number(channel_name):
    """The number already called in before: the identity index points it at someone else."""
    other = identity.resolve(channel_name, NUMBER, phone=NUMBER).customer_id
    assert other != CUSTOMER
    return other


# --------------------------------------------------------------------- Twilio


@pytest.fixture
def twilio(redis, recorder):
    channel = TwilioVoiceInput.from_credentials({
        "auth_token": AUTH_TOKEN, "account_sid": ACCOUNT_SID, "caller_number": TWILIO_FROM, "api_base": recorder.url,
    })
    with serve_channel(channel, EchoAgent(bot)) as running:
        channel.config["public_base_url"] = running.server.url
        yield running


CALLS_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


def twilio_post(url, params, signed=True):
    headers = sign_request(AUTH_TOKEN, url, params) if signed else {"Content-Type": "application/x-www-form-urlencoded"}
    return requests.post(url, data=params, headers=headers, timeout=30)


def twilio_answer(url, sid=TWILIO_SID, **fields):
    params = [("CallSid", sid), ("AccountSid", ACCOUNT_SID), ("Direction", "outbound-api"), ("From", TWILIO_FROM),
              ("To", NUMBER), ("CallStatus", "in-progress")] + list(fields.items())
    return twilio_post(url, params)


def twiml_of(reply):
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/xml")
    return assert_valid_twiml(reply.content)


@pytest.mark.services
def test_twilio_places_the_call_with_the_calls_resource(twilio, recorder):
    recorder.respond(CALLS_PATH, status=201, json={"sid": TWILIO_SID, "status": "queued"})
    placed = place(twilio.channel)
    assert placed == PlacedCall(True, call_id=TWILIO_SID, status=201)
    (request,) = recorder.requests
    assert request.method == "POST" and request.path == CALLS_PATH
    assert request.header("Authorization") == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.header("Content-Type").startswith("application/x-www-form-urlencoded")
    form = request.form
    assert form["To"] == [NUMBER] and form["From"] == [TWILIO_FROM] and form["Method"] == ["POST"]
    answer = urlsplit(form["Url"][0])
    assert f"{answer.scheme}://{answer.netloc}" == twilio.server.url and answer.path == "/webhooks/twilio_voice/outbound"
    assert len(parse_qs(answer.query)["token"][0]) >= 32
    assert form["StatusCallback"] == [f"{twilio.server.url}/webhooks/twilio_voice/status"]
    assert form["StatusCallbackMethod"] == ["POST"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


@pytest.mark.services
def test_twilio_answer_speaks_the_prompt_and_the_callee_talks_to_the_customers_conversation(twilio, recorder, redis):
    other = other_customer_holds_the_number("twilio_voice")
    recorder.respond(CALLS_PATH, status=201, json={"sid": TWILIO_SID})
    assert place(twilio.channel).ok
    url = recorder.requests[0].form["Url"][0]

    reply = twilio_answer(url)
    root = twiml_of(reply)
    gather = gather_of(root)
    assert [child.tag for child in root] == ["Gather"]
    assert gather.get("action") == f"{twilio.server.url}/webhooks/twilio_voice/gather?turn=1"
    assert gather.get("bargeIn") == "true" and gather.get("input") == "speech dtmf"
    assert voice.spoken_preview(say_ssml(root)) == PROMPT
    assert twilio.agent.messages == []  # the worker put the prompt in the conversation already
    assert twilio_answer(url).text == reply.text  # Twilio retries the same answer: same document, once
    call = live.live_call(redis, CUSTOMER)
    assert call == live.LiveCall("twilio_voice", TWILIO_SID, "outbound_call") and not call.may_hear_personal_data

    twilio_answer(gather.get("action"), SpeechResult="Yes please, book it", Confidence="0.92")
    (message,) = twilio.agent.messages
    assert message.sender_id == CUSTOMER != other
    assert message.text == "Yes please, book it" and message.input_channel == "twilio_voice"
    meta = message.metadata
    assert meta["trust"] == "low" and meta["origin"] == "outbound_call" and meta["call_sid"] == TWILIO_SID
    assert meta["channel_user_id"] == NUMBER and meta["message_id"] == f"{TWILIO_SID}:t1"
    assert identity.channel_identity("twilio_voice", NUMBER).customer_id == other  # the index is untouched

    events = voice.read_events(redis, TWILIO_SID)
    assert [(e["kind"], e["customer_id"]) for e in events[:2]] == [("call_placed", CUSTOMER), ("call_started", CUSTOMER)]
    assert events[1]["details"] == {"direction": "outbound", "context": CONTEXT}
    status = twilio_post(f"{twilio.server.url}/webhooks/twilio_voice/status",
                         [("CallSid", TWILIO_SID), ("CallStatus", "completed"), ("CallDuration", "31")])
    assert status.status_code == 200
    assert voice.read_events(redis, TWILIO_SID)[-1]["kind"] == "call_completed"
    assert live.live_call(redis, CUSTOMER) is None


@pytest.mark.services
def test_twilio_unsigned_answer_is_refused(twilio, recorder):
    recorder.respond(CALLS_PATH, status=201, json={"sid": TWILIO_SID})
    assert place(twilio.channel).ok
    url = recorder.requests[0].form["Url"][0]
    reply = twilio_post(url, [("CallSid", TWILIO_SID), ("To", NUMBER)], signed=False)
    assert reply.status_code == 403
    forged = twilio_post(url.replace("token=", "token=x"), [("CallSid", TWILIO_SID), ("To", NUMBER)])
    assert forged.status_code == 200  # signed for another URL is fine for Twilio, but the token is unknown
    assert [c.tag for c in twiml_of(forged)] == ["Say", "Hangup"]
    assert twilio.agent.messages == []


@pytest.mark.services
def test_twilio_unknown_or_used_token_hangs_up_politely(twilio, recorder, redis):
    reply = twilio_answer(f"{twilio.server.url}/webhooks/twilio_voice/outbound?token=nope")
    root = twiml_of(reply)
    assert [c.tag for c in root] == ["Say", "Hangup"] and voice.spoken_preview(say_ssml(root)) == HANGUP_TEXT
    no_token = twilio_answer(f"{twilio.server.url}/webhooks/twilio_voice/outbound")
    assert [c.tag for c in twiml_of(no_token)] == ["Say", "Hangup"]

    recorder.respond(CALLS_PATH, status=201, json={"sid": TWILIO_SID})
    assert place(twilio.channel).ok
    url = recorder.requests[0].form["Url"][0]
    assert twiml_of(twilio_answer(url)).find("Gather") is not None
    another_call = twilio_answer(url, sid="CA" + "8" * 32)  # the token answers one call only
    assert [c.tag for c in twiml_of(another_call)] == ["Say", "Hangup"]
    assert twilio.agent.messages == [] and live.live_call(redis, CUSTOMER).call_id == TWILIO_SID


@pytest.mark.services
def test_twilio_without_outbound_settings_says_what_to_set(redis, recorder, monkeypatch):
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_CALLER_NUMBER", "TWILIO_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    inbound_only = TwilioVoiceInput.from_credentials({"auth_token": AUTH_TOKEN, "api_base": recorder.url})
    placed = place(inbound_only)
    assert not placed.ok and "not configured" in placed.error
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_CALLER_NUMBER", "TWILIO_PUBLIC_BASE_URL"):
        assert name in placed.error
    no_base = TwilioVoiceInput.from_credentials({"auth_token": AUTH_TOKEN, "api_base": recorder.url,
                                                 "account_sid": ACCOUNT_SID, "caller_number": TWILIO_FROM})
    placed = place(no_base)
    assert not placed.ok and placed.error.endswith("set TWILIO_PUBLIC_BASE_URL")
    bad = place(no_base, number="not a number")
    assert not bad.ok and "E.164" in bad.error
    assert recorder.requests == []


@pytest.mark.services
def test_twilio_429_reports_retry_after(twilio, recorder, redis):
    recorder.respond(CALLS_PATH, status=429, headers={"Retry-After": "120"},
                     json={"code": 20429, "message": "Too Many Requests", "status": 429})
    placed = place(twilio.channel)
    assert not placed.ok and placed.status == 429 and placed.retry_after == pytest.approx(120)
    assert len(recorder.requests) == 1  # longer than OUTBOUND_RETRY_MAX_DELAY: the worker reschedules
    assert voice.read_events(redis) == []


@pytest.mark.services
def test_twilio_500_fails_once_with_the_token_redacted(twilio, recorder):
    recorder.respond(CALLS_PATH, status=500, json={"message": f"boom {AUTH_TOKEN}", "status": 500})
    placed = place(twilio.channel)
    assert not placed.ok and placed.status == 500 and placed.call_id is None and placed.retry_after is None
    assert "HTTP 500" in placed.error and AUTH_TOKEN not in placed.error and "***" in placed.error
    assert len(recorder.requests) == 1  # a 500 may hide a placed call: never retried


# -------------------------------------------------------------------- jambonz


@pytest.fixture
def jambonz(redis, recorder):
    channel = JambonzInput.from_credentials({
        "webhook_secret": WEBHOOK_SECRET, "account_sid": JAMBONZ_ACCOUNT, "api_key": API_KEY,
        "caller_number": JAMBONZ_FROM, "application_sid": "app-sid-1", "api_base": recorder.url,
    })
    with serve_channel(channel, EchoAgent(bot)) as running:
        channel.config["public_base_url"] = running.server.url
        yield running


CREATE_PATH = f"/v1/Accounts/{JAMBONZ_ACCOUNT}/Calls"


def jambonz_post(url, payload, signed=True):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["Jambonz-Signature"] = signature_header(WEBHOOK_SECRET, body)
    return requests.post(url, data=body, headers=headers, timeout=30)


def jambonz_answer(url, sid=JAMBONZ_SID, **fields):
    return jambonz_post(url, {"call_sid": sid, "direction": "outbound", "from": JAMBONZ_FROM, "to": NUMBER,
                              "call_status": "in-progress", "account_sid": JAMBONZ_ACCOUNT, **fields})


def verbs_of(reply):
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return assert_valid_jambonz(reply.text)


@pytest.mark.services
def test_jambonz_places_the_call_with_create_call(jambonz, recorder):
    recorder.respond(CREATE_PATH, status=201, json={"sid": JAMBONZ_SID})
    placed = place(jambonz.channel)
    assert placed == PlacedCall(True, call_id=JAMBONZ_SID, status=201)
    (request,) = recorder.requests
    assert request.method == "POST" and request.path == CREATE_PATH
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    body = request.json
    answer = body["call_hook"]["url"]
    assert answer.startswith(f"{jambonz.server.url}/webhooks/jambonz/outbound?token=")
    assert body == {
        "from": JAMBONZ_FROM,
        "to": {"type": "phone", "number": NUMBER},
        "call_hook": {"url": answer, "method": "POST"},
        "call_status_hook": {"url": f"{jambonz.server.url}/webhooks/jambonz/status", "method": "POST"},
        "application_sid": "app-sid-1",
        "tag": CONTEXT,
    }


@pytest.mark.services
def test_jambonz_answer_speaks_the_prompt_and_the_callee_talks_to_the_customers_conversation(jambonz, recorder, redis):
    other = other_customer_holds_the_number("jambonz")
    recorder.respond(CREATE_PATH, status=201, json={"sid": JAMBONZ_SID})
    assert place(jambonz.channel).ok
    url = recorder.requests[0].json["call_hook"]["url"]

    reply = jambonz_answer(url)
    (gather,) = verbs_of(reply)
    assert gather["verb"] == "gather" and gather["bargein"] is True and gather["input"] == ["speech", "digits"]
    assert gather["actionHook"] == f"{jambonz.server.url}/webhooks/jambonz/gather?turn=1"
    assert voice.spoken_preview(gather["say"]["text"][len("<speak>"):-len("</speak>")]) == PROMPT
    assert jambonz.agent.messages == []
    assert jambonz_answer(url).text == reply.text

    speech = {"is_final": True, "alternatives": [{"transcript": "yes, book the workshop", "confidence": 0.9}]}
    verbs_of(jambonz_answer(gather["actionHook"], reason="speechDetected", speech=speech))
    (message,) = jambonz.agent.messages
    assert message.sender_id == CUSTOMER != other and message.text == "yes, book the workshop"
    assert message.metadata["trust"] == "low" and message.metadata["origin"] == "outbound_call"
    assert [e["kind"] for e in voice.read_events(redis, JAMBONZ_SID)][:2] == ["call_placed", "call_started"]


@pytest.mark.services
def test_jambonz_unsigned_answer_is_refused_and_unknown_token_hangs_up(jambonz, recorder):
    recorder.respond(CREATE_PATH, status=201, json={"sid": JAMBONZ_SID})
    assert place(jambonz.channel).ok
    url = recorder.requests[0].json["call_hook"]["url"]
    unsigned = jambonz_post(url, {"call_sid": JAMBONZ_SID, "direction": "outbound", "to": NUMBER}, signed=False)
    assert unsigned.status_code == 403
    verbs = verbs_of(jambonz_answer(f"{jambonz.server.url}/webhooks/jambonz/outbound?token=unknown"))
    assert [v["verb"] for v in verbs] == ["say", "hangup"]
    assert jambonz.agent.messages == []


@pytest.mark.services
def test_jambonz_basic_auth_hooks_carry_the_credentials(redis, recorder):
    channel = JambonzInput.from_credentials({
        "webhook_secret": WEBHOOK_SECRET, "basic_auth_user": "jb", "basic_auth_password": "jb-password",
        "account_sid": JAMBONZ_ACCOUNT, "api_key": API_KEY, "caller_number": JAMBONZ_FROM,
        "api_base": recorder.url, "public_base_url": "https://voice.example.com",
    })
    recorder.respond(CREATE_PATH, status=201, json={"sid": JAMBONZ_SID})
    assert place(channel, context=None).ok
    body = recorder.requests[0].json
    assert body["call_status_hook"] == {"url": "https://voice.example.com/webhooks/jambonz/status", "method": "POST",
                                        "username": "jb", "password": "jb-password"}
    assert "application_sid" not in body and "tag" not in body


@pytest.mark.services
def test_jambonz_without_outbound_settings_says_what_to_set(redis, recorder, monkeypatch):
    for name in ("JAMBONZ_ACCOUNT_SID", "JAMBONZ_API_KEY", "JAMBONZ_CALLER_NUMBER", "JAMBONZ_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    placed = place(JambonzInput.from_credentials({"webhook_secret": WEBHOOK_SECRET, "api_base": recorder.url}))
    assert not placed.ok and "not configured" in placed.error
    for name in ("JAMBONZ_ACCOUNT_SID", "JAMBONZ_API_KEY", "JAMBONZ_CALLER_NUMBER", "JAMBONZ_PUBLIC_BASE_URL"):
        assert name in placed.error
    assert recorder.requests == []


@pytest.mark.services
def test_jambonz_429_reports_retry_after_and_500_fails_redacted(jambonz, recorder):
    recorder.respond(CREATE_PATH, status=429, headers={"Retry-After": "90"}, json={"msg": "slow down"}, times=1)
    placed = place(jambonz.channel)
    assert not placed.ok and placed.status == 429 and placed.retry_after == pytest.approx(90)
    recorder.respond(CREATE_PATH, status=500, json={"msg": f"bad key {API_KEY}"})
    placed = place(jambonz.channel)
    assert not placed.ok and placed.status == 500 and placed.retry_after is None
    assert "HTTP 500" in placed.error and API_KEY not in placed.error
    assert len(recorder.requests) == 2  # neither retried: the 429 asked for longer than the retry limit


@pytest.mark.services
def test_a_short_retry_after_is_waited_out(jambonz, recorder):
    recorder.respond(CREATE_PATH, status=201, json={"sid": JAMBONZ_SID})
    recorder.respond(CREATE_PATH, status=429, headers={"Retry-After": "0"}, json={"msg": "slow down"}, times=1)
    placed = place(jambonz.channel)
    assert placed.ok and placed.call_id == JAMBONZ_SID and len(recorder.requests) == 2
