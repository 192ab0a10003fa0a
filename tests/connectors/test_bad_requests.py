"""Every connector answers a bad request with 400 and a message that says what is wrong.

Each body here is authentic (signed or carrying the right secret), so it gets
past verification and reaches decoding and parsing: the places where a shape
the code did not expect could otherwise become a 500. Nothing reaches the bot
and nothing is stored for any of them.
"""
import json

import pytest
import requests
from twilio.request_validator import RequestValidator

from connectors.jambonz import JambonzInput, signature_header
from connectors.telegram import TelegramInput
from connectors.twilio_voice import TwilioVoiceInput
from connectors.webchat import WebchatInput, visitor_token
from connectors.whatsapp import WhatsAppInput
from tests.connectors.harness import EchoAgent, serve_channel
from tests.support import payloads as p

WA_SECRET = "app-secret-for-tests"
TG_SECRET = "telegram-secret-token"
TWILIO_TOKEN = "12345"
JAMBONZ_SECRET = "wh_secret_for_tests"

pytestmark = pytest.mark.services


def assert_explained(reply, *words):
    """400 with a JSON error naming the problem (never the bare "bad request")."""
    assert reply.status_code == 400, (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert error and error.lower() != "bad request"
    for word in words:
        assert word.lower() in error.lower(), error


@pytest.fixture
def served(request, recorder, redis):
    channel = request.param(recorder.url)
    agent = EchoAgent()
    with serve_channel(channel, agent) as running:
        running.redis = redis
        yield running
    assert agent.messages == [], "a bad request reached the bot"
    stored = [k for k in redis.scan_iter(match="tltest*", count=1000) if b":limit:" not in k]
    assert stored == [], f"a bad request left {stored}"


def whatsapp(api):
    return WhatsAppInput.from_credentials({"verify_token": "v", "app_secret": WA_SECRET, "access_token": "t",
                                           "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": api})


def telegram(api):
    return TelegramInput.from_credentials({"bot_token": "7000000001:AAH-test-token",
                                           "secret_token": TG_SECRET, "api_base": api})


def twilio(_api):
    return TwilioVoiceInput.from_credentials({"auth_token": TWILIO_TOKEN})


def jambonz(_api):
    return JambonzInput.from_credentials({"webhook_secret": JAMBONZ_SECRET})


def webchat(_api):
    return WebchatInput.from_credentials({"identity_secret_env": "WEBCHAT_IDENTITY_SECRET"})


WHATSAPP_BODIES = [
    (b'{"object": "whatsapp_business_account", "entry": [', ("JSON",)),
    (b"\xff\xfe{}", ("JSON",)),
    (b"[1, 2]", ("WhatsApp",)),
    (b'{"object": "page", "entry": []}', ("WhatsApp",)),
    (b'{"object": "whatsapp_business_account", "entry": "x"}', ("entry",)),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": {"value": 1}}]}', ("changes",)),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": []}]}]}', ("value",)),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
     b'"value": {"messages": [1]}}]}]}', ("message",)),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
     b'"value": {"messages": [{"id": "wamid.1", "type": "text", "text": {"body": "hi"}}]}}]}]}', ("from",)),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
     b'"value": {"messages": [{"from": "16505551234", "id": "wamid.1", "type": "text", "text": "hi"}]}}]}]}',
     ("text",)),
]


@pytest.mark.parametrize("served", [whatsapp], indirect=True)
@pytest.mark.parametrize("body, words", WHATSAPP_BODIES)
def test_whatsapp(served, body, words):
    reply = requests.post(served.url + "/webhook", data=body,
                          headers={"X-Hub-Signature-256": p.sign_whatsapp(body, WA_SECRET),
                                   "Content-Type": "application/json"}, timeout=30)
    assert_explained(reply, *words)


TELEGRAM_BODIES = [
    ("{'update_id': 1", ("JSON",)),
    ("[1]", ("Telegram update",)),
    ('{"message": {"text": "no update id"}}', ("Telegram update",)),
    ('{"update_id": "one", "message": {}}', ("update_id",)),
    ('{"update_id": 5, "message": "hi"}', ("message",)),
    ('{"update_id": 5, "message": {"message_id": 1, "from": {"first_name": "A"}, "chat": {"id": 1}, "text": "hi"}}',
     ("message.from.id",)),
    ('{"update_id": 5, "message": {"message_id": 1, "from": {"id": 9}, "chat": 7, "text": "hi"}}', ("chat",)),
    ('{"update_id": 5, "message": {"message_id": 1, "from": {"id": 9}, "chat": {"id": 9}, "text": 4}}',
     ("text",)),
    ('{"update_id": 5, "callback_query": {"id": "q", "from": {"id": 9}, "data": ["x"]}}', ("data",)),
]


@pytest.mark.parametrize("served", [telegram], indirect=True)
@pytest.mark.parametrize("body, words", TELEGRAM_BODIES)
def test_telegram(served, body, words):
    reply = requests.post(served.url + "/webhook", data=body, headers=p.telegram_headers(TG_SECRET), timeout=30)
    assert_explained(reply, *words)


@pytest.mark.parametrize("served", [telegram], indirect=True)
def test_telegram_message_without_a_sender_is_ignored_as_the_contract_allows(served):
    # ``from`` is optional in Telegram's Message (messages to channels have none).
    body = '{"update_id": 5, "message": {"message_id": 1, "chat": {"id": 1, "type": "channel"}, "text": "hi"}}'
    reply = requests.post(served.url + "/webhook", data=body, headers=p.telegram_headers(TG_SECRET), timeout=30)
    assert reply.status_code == 200, reply.text


TWILIO_BODIES = [
    ("From=%2B14155552671", None, ("CallSid",)),
    ("CallSid=CA1&From=%FF%FE", None, ("form",)),
    ('{"CallSid": "CA1"}', "application/json", ("application/x-www-form-urlencoded",)),
]


@pytest.mark.parametrize("served", [twilio], indirect=True)
@pytest.mark.parametrize("body, content_type, words", TWILIO_BODIES)
def test_twilio(served, body, content_type, words):
    url = served.url + "/webhook"
    from urllib.parse import parse_qsl
    params = dict(parse_qsl(body, errors="replace")) if content_type is None else {}
    headers = {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, params),
               "Content-Type": content_type or "application/x-www-form-urlencoded"}
    reply = requests.post(url, data=body.encode(), headers=headers, timeout=30)
    assert_explained(reply, *words)


JAMBONZ_BODIES = [
    (b"not json", ("JSON",)),
    (b"[1, 2]", ("JSON object",)),
    (b'{"from": "+14155552671"}', ("call_sid",)),
    (b'{"call_sid": 7}', ("call_sid",)),
]


@pytest.mark.parametrize("served", [jambonz], indirect=True)
@pytest.mark.parametrize("body, words", JAMBONZ_BODIES)
def test_jambonz(served, body, words):
    headers = {"Content-Type": "application/json", "Jambonz-Signature": signature_header(JAMBONZ_SECRET, body)}
    assert_explained(requests.post(served.url + "/webhook", data=body, headers=headers, timeout=30), *words)


@pytest.mark.parametrize("served", [webchat], indirect=True)
def test_webchat(served):
    token = visitor_token("v-" + "a" * 30)
    cases = [
        ("not json", ("JSON",)),
        ('["x"]', ("sender", "message")),
        (json.dumps({"sender": "someone", "message": "hi"}), ("sender",)),
        (json.dumps({"sender": token, "message": ""}), ("message",)),
        (json.dumps({"sender": token, "message": 5}), ("message",)),
        (json.dumps({"sender": token, "message": "x" * 5000}), ("longer",)),
    ]
    for body, words in cases:
        reply = requests.post(served.url + "/webhook", data=body, headers={"Content-Type": "application/json"},
                              timeout=30)
        assert_explained(reply, *words)
