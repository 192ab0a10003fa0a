"""Consent through the real webhooks: keywords before NLU, one confirmation, suppression at send time, platform signals."""
import asyncio
import json

import pytest
import requests

from connectors import consent as connector_consent
from connectors.telegram import TelegramInput
from connectors.twilio_voice import TwilioVoiceInput, sign_request
from connectors.webchat import WebchatInput
from connectors.webchat.visitors import visitor_token
from connectors.whatsapp import WhatsAppInput
from tests.connectors.harness import EchoAgent, serve_channel
from tests.support import payloads as p
from threadline import consent, identity
from threadline.db import consent as ledger

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]

WA_ID = "16505551234"
WA_SECRET = "app-secret-for-tests"
TG_TOKEN = "123456:TEST-TOKEN"
TG_SECRET = "telegram-secret-for-tests"
TWILIO_TOKEN = "twilio-token-for-tests"
CALLER = "+14155550142"

# Each keyword, and variants of case, spacing and punctuation.
VARIANTS = ["STOP", "stop", "Stop!", " stop. ", "STOPALL", "stop all", "Unsubscribe", "END", "quit",
            "revoke", "OPTOUT", "opt-out", "opt out!", "Cancel", "CANCEL."]


def whatsapp(api):
    return WhatsAppInput.from_credentials({"verify_token": "v", "app_secret": WA_SECRET, "access_token": "tok",
                                           "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": api})


def telegram(api):
    return TelegramInput.from_credentials({"bot_token": TG_TOKEN, "secret_token": TG_SECRET, "api_base": api})


class Whatsapp:
    name = "whatsapp"

    def __init__(self, served):
        self.served, self.n = served, 0

    def say(self, text):
        self.n += 1
        raw, headers = p.signed_whatsapp_request(p.whatsapp_text_payload(WA_ID, text, f"wamid.c{self.n}"), WA_SECRET)
        return requests.post(self.served.url + "/webhook", data=raw, headers=headers, timeout=30)

    def customer(self):
        return identity.channel_identity("whatsapp", WA_ID).customer_id

    def sends(self, recorder):
        return recorder.requests_to(f"/{p.BUSINESS_PHONE_NUMBER_ID}/messages")


class Telegram:
    name = "telegram"

    def __init__(self, served):
        self.served, self.n = served, 0

    def say(self, text):
        self.n += 1
        update = p.telegram_text_update(4242, text, 9000 + self.n)
        return requests.post(self.served.url + "/webhook", data=json.dumps(update),
                             headers=p.telegram_headers(TG_SECRET), timeout=30)

    def customer(self):
        return identity.channel_identity("telegram", "4242").customer_id

    def sends(self, recorder):
        return recorder.requests_to(f"/bot{TG_TOKEN}/sendMessage")


@pytest.fixture(params=["whatsapp", "telegram"])
def messaging(request, recorder, redis):
    channel = whatsapp(recorder.url) if request.param == "whatsapp" else telegram(recorder.url)
    with serve_channel(channel) as served:
        served.recorder = recorder
        yield (Whatsapp if request.param == "whatsapp" else Telegram)(served)


def proactive(served, customer_id, message=None):
    """What Rasa's trigger_intent does: a send outside any reply, through the channel's output."""
    output = served.channel.get_output_channel()
    asyncio.run(output.send_response(customer_id, message or {"text": "Your repair is ready for pick-up."}))
    return output


@pytest.mark.parametrize("word", VARIANTS)
def test_a_keyword_revokes_at_once_confirms_once_and_suppresses_the_next_proactive_send(messaging, word):
    messaging.say("hello")  # the customer exists and is reachable
    messaging.served.recorder.clear()
    assert messaging.say(word).status_code == 200
    customer = messaging.customer()
    state = consent.states(customer)
    assert state[(messaging.name, "service")] == "revoked" and state[(messaging.name, "marketing")] == "revoked"
    history = ledger.history(customer)
    assert {(h["purpose"], h["state"], h["source"]) for h in history} == {
        ("service", "revoked", "keyword"), ("marketing", "revoked", "keyword")}
    assert all(h["wording_version"] == consent.wording_version() for h in history)
    (confirmation,) = [r.json for r in messaging.sends(messaging.served.recorder)]
    assert "START" in json.dumps(confirmation)
    assert [m.text for m in messaging.served.agent.messages] == ["hello"]  # never a task command
    messaging.served.recorder.clear()
    output = proactive(messaging.served, customer)
    assert messaging.sends(messaging.served.recorder) == []
    assert output.last_report is not None and not output.last_report.ok
    assert ledger.suppressed(customer)[-1]["reason"] == "opted_out"


def test_start_opts_back_in_and_help_answers(messaging):
    messaging.say("STOP")
    messaging.say("start")
    customer = messaging.customer()
    assert consent.states(customer)[(messaging.name, "service")] == "granted"
    messaging.served.recorder.clear()
    messaging.say("HELP")
    (answer,) = messaging.sends(messaging.served.recorder)
    assert "STOP" in json.dumps(answer.json) and "START" in json.dumps(answer.json)
    messaging.served.recorder.clear()
    proactive(messaging.served, customer)
    assert len(messaging.sends(messaging.served.recorder)) == 1


@pytest.mark.parametrize("text", ["stop my cancellation", "cancel my appointment", "please stop", "/start",
                                  "stop 482913", "the end of the line"])
def test_sentences_and_commands_are_not_keywords(messaging, text):
    messaging.say(text)
    assert consent.states(messaging.customer()) == {}
    assert messaging.served.agent.messages[-1].text is not None


def test_replies_to_the_customer_are_service_messages_even_after_an_opt_out(messaging):
    messaging.say("STOP")
    messaging.served.recorder.clear()
    messaging.say("where is my order 482913")  # the customer writes again: the answer goes
    assert len(messaging.sends(messaging.served.recorder)) == 1


def test_marketing_needs_a_grant(messaging):
    messaging.say("hello")
    customer = messaging.customer()
    messaging.served.recorder.clear()
    proactive(messaging.served, customer, {"text": "20% off this week", "custom": {"purpose": "marketing"}})
    assert messaging.sends(messaging.served.recorder) == []
    assert ledger.suppressed(customer)[-1]["reason"] == "no_marketing_consent"
    consent.record(customer, messaging.name, consent.MARKETING, consent.GRANTED, consent.SOURCE_OPERATOR)
    proactive(messaging.served, customer, {"text": "20% off this week", "custom": {"purpose": "marketing"}})
    (sent,) = messaging.sends(messaging.served.recorder)
    assert "purpose" not in json.dumps(sent.json)


def test_stopall_revokes_every_channel_of_the_customer(recorder, redis):
    with serve_channel(whatsapp(recorder.url)) as served:
        chat = Whatsapp(served)
        chat.say("hello")
        customer = chat.customer()
        identity.link("telegram", "777", customer, "low")
        chat.say("STOPALL")
    state = consent.states(customer)
    assert state[("whatsapp", "service")] == state[("telegram", "service")] == "revoked"


# ---------------------------------------------------------------- web chat


def test_webchat_keyword_is_answered_in_the_reply(redis):
    with serve_channel(WebchatInput.from_credentials({})) as served:
        sender = visitor_token("visitor01-a1b2c3d4e5f6")
        reply = requests.post(served.url + "/webhook", json={"sender": sender, "message": "Stop."}, timeout=30)
        assert reply.status_code == 200
        (answer,) = reply.json()
        assert "START" in answer["text"]
        assert served.agent.messages == []
        customer = identity.channel_identity("webchat", "visitor01-a1b2c3d4e5f6").customer_id
        assert consent.states(customer)[("webchat", "service")] == "revoked"


# -------------------------------------------------------------------- voice


class Call:
    def __init__(self, served, sid="CA" + "7" * 32):
        self.served, self.sid, self.reply = served, sid, None

    def post(self, url, params):
        url = url if url.startswith("http") else self.served.url + url
        self.reply = requests.post(url, data=params, headers=sign_request(TWILIO_TOKEN, url, params), timeout=30)
        return self.reply

    def ring(self):
        return self.post("/webhook", [("CallSid", self.sid), ("From", CALLER), ("To", "+18005551212"),
                                      ("CallStatus", "ringing")])

    def answer(self, **fields):
        import xml.etree.ElementTree as ET

        action = next(ET.fromstring(self.reply.content).iter("Gather")).get("action")
        return self.post(action, [("CallSid", self.sid), ("From", CALLER)] + list(fields.items()))


def greeter(message):
    return [{"text": "Hello, what can I do for you?"}]


@pytest.mark.parametrize("fields", [{"SpeechResult": "Stop.", "Confidence": "0.9"}, {"Digits": "*"}])
def test_voice_opt_out_spoken_or_on_the_keypad(redis, fields):
    channel = TwilioVoiceInput.from_credentials({"auth_token": TWILIO_TOKEN})
    with serve_channel(channel, EchoAgent(greeter)) as served:
        call = Call(served)
        call.ring()
        call.answer(**fields)
        assert call.reply.status_code == 200 and b"START" in call.reply.content
        assert [m.text for m in served.agent.messages] == ["/greet"]
    customer = identity.channel_identity("twilio_voice", CALLER).customer_id
    assert consent.states(customer)[("twilio_voice", "service")] == "revoked"


def test_a_recording_starts_only_after_the_notice_and_is_recorded_per_call(redis, monkeypatch):
    monkeypatch.setenv("VOICE_RECORDING", "on")
    monkeypatch.setenv("VOICE_RECORDING_NOTICE", "This call may be recorded.")
    channel = TwilioVoiceInput.from_credentials({"auth_token": TWILIO_TOKEN})
    with serve_channel(channel, EchoAgent(greeter)) as served:
        call = Call(served, sid="CA" + "8" * 32)
        call.ring()
        first = call.reply.text
        call.answer(SpeechResult="where is my order", Confidence="0.9")
        second = call.reply.text
    assert first.index("This call may be recorded.") < first.index("<Start><Recording")
    assert "<Recording" not in second
    customer = identity.channel_identity("twilio_voice", CALLER).customer_id
    (row,) = ledger.history(customer)
    assert (row["purpose"], row["state"], row["source"], row["detail"]) == ("recording", "granted", "notice", call.sid)


def test_no_recording_when_it_is_off(redis):
    channel = TwilioVoiceInput.from_credentials({"auth_token": TWILIO_TOKEN})
    with serve_channel(channel, EchoAgent(greeter)) as served:
        call = Call(served, sid="CA" + "9" * 32)
        call.ring()
        assert "<Recording" not in call.reply.text and "recorded" not in call.reply.text


# --------------------------------------------------------- platform signals


def test_whatsapp_user_preferences_stop_and_resume_marketing(recorder, redis):
    with serve_channel(whatsapp(recorder.url)) as served:
        chat = Whatsapp(served)
        chat.say("hello")
        customer = chat.customer()
        for value in ("stop", "resume"):
            payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                "field": "user_preferences",
                "value": {"messaging_product": "whatsapp",
                          "metadata": {"display_phone_number": "15550001111",
                                       "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID},
                          "contacts": [{"profile": {"name": "Test"}, "wa_id": WA_ID}],
                          "user_preferences": [{"wa_id": WA_ID, "detail": "User requested to stop marketing messages",
                                                "category": "marketing_messages", "value": value,
                                                "timestamp": 1731705721}]}}]}]}
            raw, headers = p.signed_whatsapp_request(payload, WA_SECRET)
            assert requests.post(served.url + "/webhook", data=raw, headers=headers, timeout=30).status_code == 200
            expected = "revoked" if value == "stop" else "granted"
            assert consent.states(customer)[("whatsapp", "marketing")] == expected
    rows = ledger.history(customer)
    assert [(r["purpose"], r["state"], r["source"]) for r in rows] == [
        ("marketing", "revoked", "platform_signal"), ("marketing", "granted", "platform_signal")]
    assert ("whatsapp", "service") not in consent.states(customer)


def test_telegram_kicked_records_a_channel_opt_out(recorder, redis):
    with serve_channel(telegram(recorder.url)) as served:
        chat = Telegram(served)
        chat.say("hello")
        update = {"update_id": 77001, "my_chat_member": {
            "chat": {"id": 4242, "type": "private"}, "from": {"id": 4242, "is_bot": False, "first_name": "T"},
            "date": 1700000000, "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": True}},
            "new_chat_member": {"status": "kicked", "user": {"id": 1, "is_bot": True}, "until_date": 0}}}
        reply = requests.post(served.url + "/webhook", data=json.dumps(update), headers=p.telegram_headers(TG_SECRET))
        assert reply.status_code == 200
        customer = chat.customer()
        assert consent.states(customer)[("telegram", "service")] == "revoked"
        recorder.clear()
        proactive(served, customer)
        assert chat.sends(recorder) == []


def test_telegram_403_blocked_records_a_channel_opt_out(recorder, redis):
    with serve_channel(telegram(recorder.url)) as served:
        chat = Telegram(served)
        chat.say("hello")
        customer = chat.customer()
        recorder.respond(f"/bot{TG_TOKEN}/sendMessage", 403,
                         {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
        proactive(served, customer)
        assert consent.states(customer)[("telegram", "service")] == "revoked"
        assert ledger.history(customer)[0]["detail"] == "sendMessage:403"
        recorder.clear()
        proactive(served, customer)
        assert chat.sends(recorder) == []


def test_signals_for_unknown_users_are_ignored(redis):
    assert connector_consent.platform_opt_out("telegram", "no-such-user", "my_chat_member:kicked") is None


def test_a_suppressed_send_is_described_to_the_agent_in_words():
    from connectors.consent import describe_failure

    assert describe_failure("suppressed: opted_out") == "the customer opted out of messages on this channel"
    assert "24 hours" in describe_failure("suppressed: outside_window")
    assert describe_failure("HTTP 500 from the platform") == "HTTP 500 from the platform"
