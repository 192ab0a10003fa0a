"""Twilio voice: the signature against Twilio's own validator, and the webhooks over real HTTP."""
import contextlib
import random
import string
import time
from urllib.parse import urlsplit

import pytest
import requests
from rasa.core.run import configure_app
from sanic import Sanic
from twilio.request_validator import RequestValidator

from connectors import voice
from connectors.base import DisabledChannel
from connectors.twilio_voice import TwilioVoiceInput, compute_signature, sign_request, validate_signature
from connectors.whatsapp import WhatsAppInput
from tests.connectors.harness import EchoAgent, ServerThread, serve_channel
from tests.connectors.test_voice_checks import assert_valid_twiml, gather_of, say_ssml
from tests.support import payloads as p
from threadline import identity, prefetch

TOKEN = "12345"
CALLER = "+14155552671"

# ------------------------------------------------------------------- signatures

DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
               "From": "+12349013030", "To": "+18005551212"}
DOCS_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="  # Twilio docs, "Validating signatures from Twilio"


def test_twilios_published_example():
    assert compute_signature(TOKEN, DOCS_URL, DOCS_PARAMS) == DOCS_SIGNATURE
    assert RequestValidator(TOKEN).compute_signature(DOCS_URL, DOCS_PARAMS) == DOCS_SIGNATURE
    assert validate_signature(TOKEN, DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE)
    assert not validate_signature(TOKEN, DOCS_URL, dict(DOCS_PARAMS, Digits="1235"), DOCS_SIGNATURE)
    assert not validate_signature("54321", DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE)
    assert not validate_signature(TOKEN, DOCS_URL + "&baz=3", DOCS_PARAMS, DOCS_SIGNATURE)
    assert not validate_signature(TOKEN, DOCS_URL, DOCS_PARAMS, None)


def _random_text(rng, alphabet=string.ascii_letters + string.digits + " +-_.&=?%/:éü€中🙂"):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def test_agrees_with_the_twilio_library_on_random_requests():
    rng = random.Random(20240611)
    validator = RequestValidator(TOKEN)
    for _ in range(300):
        url = rng.choice(["https://example.com/hook", "http://example.com:8080/a/b?x=1&y=%20z",
                          "https://example.com:443/v", "https://example.com/p?turn=" + str(rng.randint(0, 99))])
        params = {_random_text(rng) or "k": _random_text(rng) for _ in range(rng.randint(0, 8))}
        ours = compute_signature(TOKEN, url, params)
        assert ours == validator.compute_signature(url, params)
        assert validate_signature(TOKEN, url, params, ours) is validator.validate(url, params, ours) is True
        forged = ours[:-2] + ("A=" if ours[-2] != "A" else "B=")
        assert validate_signature(TOKEN, url, params, forged) is validator.validate(url, params, forged) is False


class MultiValue(dict):
    """A form with repeated names, in the shape Twilio's validator reads (``getall``)."""

    def getall(self, name):
        return self[name]


def test_repeated_names_are_signed_like_the_library_does():
    params = MultiValue({"b": ["2", "1"], "a": ["x"]})
    expected = RequestValidator(TOKEN).compute_signature("https://e.example/h", params)
    assert compute_signature(TOKEN, "https://e.example/h", [("b", "2"), ("a", "x"), ("b", "1")]) == expected


@pytest.mark.parametrize(
    "signed, requested",
    [
        ("https://e.example/h", "https://e.example:443/h"),
        ("https://e.example:443/h", "https://e.example/h"),
        ("http://e.example/h", "http://e.example:80/h"),
    ],
)
def test_default_ports_are_accepted_either_way(signed, requested):
    signature = compute_signature(TOKEN, signed, DOCS_PARAMS)
    assert validate_signature(TOKEN, requested, DOCS_PARAMS, signature)
    assert RequestValidator(TOKEN).validate(requested, DOCS_PARAMS, signature)


def test_other_ports_must_match():
    signature = compute_signature(TOKEN, "https://e.example:8443/h", DOCS_PARAMS)
    assert not validate_signature(TOKEN, "https://e.example/h", DOCS_PARAMS, signature)
    with_credentials = compute_signature(TOKEN, "https://u:pw@e.example:443/h", DOCS_PARAMS)
    assert validate_signature(TOKEN, "https://u:pw@e.example/h", DOCS_PARAMS, with_credentials)


def test_settings_are_checked(monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    off = TwilioVoiceInput.from_credentials({})
    assert isinstance(off, DisabledChannel) and off.missing == ["TWILIO_AUTH_TOKEN"]
    with pytest.raises(Exception, match="speech_timeout"):
        TwilioVoiceInput.from_credentials({"auth_token": TOKEN, "speech_timeout": "soon"})
    monkeypatch.setenv("TWILIO_PUBLIC_BASE_URL", "https://voice.example.com")
    channel = TwilioVoiceInput.from_credentials({"auth_token": TOKEN})
    assert channel.config["public_base_url"] == "https://voice.example.com"
    assert channel.config["speech_timeout"] == "auto" and channel.name() == "twilio_voice"


# ------------------------------------------------------------------------- HTTP


def bot(message):
    """A tiny stand-in for the assistant."""
    text = message.text or ""
    if text == "/greet":
        return [{"text": "Hi, I'm Threadline's assistant. What can I do for you?", "buttons": [
            {"title": "Track an order", "payload": "/check_order"},
            {"title": "Book an appointment", "payload": "/book_appointment"}]}]
    if text == "/check_order":
        return [{"text": "What's your order number?"}]
    if text == "/request_human":
        return [{"text": "I'm connecting you with a member of our team."}]
    if text == "link please":
        return [{"text": "Track it [here](https://track.example/1Z999AA10123456784) 📦"}]
    if text == "bye":
        return [{"text": "Goodbye, and thanks for contacting Threadline.", "utter_action": "utter_goodbye"}]
    if text == "crash":
        raise RuntimeError("the bot fell over")
    if text == "silent":
        return []
    return [{"text": f"Order {text} is **on its way** 🙂"}]


class Caller:
    """Posts signed Twilio webhooks to a served channel."""

    def __init__(self, served, sid="CA" + "1" * 32, caller=CALLER, token=TOKEN):
        self.served, self.sid, self.caller, self.token = served, sid, caller, token
        self.reply = None

    def post(self, path_or_url, params, headers=None):
        url = path_or_url if path_or_url.startswith("http") else self.served.url + path_or_url
        params = [(k, v) for k, v in params if v is not None]
        self.reply = requests.post(url, data=params, headers=sign_request(self.token, url, params) if headers is None else headers, timeout=30)
        return self.reply

    @property
    def root(self):
        assert self.reply.status_code == 200, self.reply.text
        assert self.reply.headers["content-type"].startswith("text/xml")
        return assert_valid_twiml(self.reply.content)

    @property
    def heard(self):
        return voice.spoken_preview(say_ssml(self.root))

    def ring(self, **extra):
        params = [("CallSid", self.sid), ("From", self.caller), ("To", "+18005551212"), ("CallStatus", "ringing")]
        return self.post("/webhook", params + list(extra.items()))

    def answer(self, **fields):
        return self.post(gather_of(self.root).get("action"), [("CallSid", self.sid), ("From", self.caller)] + list(fields.items()))

    def status(self, status):
        return self.post("/status", [("CallSid", self.sid), ("CallStatus", status), ("CallDuration", "12")])


@pytest.fixture
def served(redis):
    channel = TwilioVoiceInput.from_credentials({"auth_token": TOKEN})
    with serve_channel(channel, EchoAgent(bot)) as running:
        yield running


@pytest.mark.services
def test_an_incoming_call_is_greeted_by_the_bot(served):
    call = Caller(served)
    call.ring()
    root = call.root
    gather = gather_of(root)
    assert gather.get("input") == "speech dtmf" and gather.get("bargeIn") == "true"
    assert gather.get("actionOnEmptyResult") == "true" and gather.get("speechTimeout") == "auto"
    assert gather.get("language") == "en-US" and gather.get("method") == "POST"
    assert gather.get("action") == f"{served.server.url}/webhooks/twilio_voice/gather?turn=1"
    assert gather.get("numDigits") == "1" and gather.get("hints") == "track an order, book an appointment"
    assert [child.tag for child in root] == ["Gather"] and [c.tag for c in gather] == ["Say"]
    assert "For Track an order, press 1 or say track an order." in call.heard
    assert call.heard.endswith("To talk to a person, press 0 at any time.")
    (message,) = served.agent.messages
    assert message.text == "/greet" and message.input_channel == "twilio_voice"
    meta = message.metadata
    assert meta["channel"] == "twilio_voice" and meta["call_sid"] == call.sid
    assert meta["channel_user_id"] == CALLER and meta["trust"] == "low" and meta["voice_event"] == "call_start"
    assert message.sender_id == identity.channel_identity("twilio_voice", CALLER).customer_id


@pytest.mark.services
def test_speech_goes_to_the_bot_with_its_confidence(served):
    call = Caller(served)
    call.ring()
    call.answer(SpeechResult="where is my order", Confidence="0.874")
    message = served.agent.messages[-1]
    assert message.text == "where is my order"
    assert message.metadata["speech_confidence"] == pytest.approx(0.874)
    assert message.metadata["input_mode"] == "speech" and message.metadata["message_id"] == f"{call.sid}:t1"


@pytest.mark.services
@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"Digits": "1"}, "/check_order"),
        ({"Digits": "2"}, "/book_appointment"),
        ({"Digits": "0"}, "/request_human"),
        ({"Digits": "9"}, "9"),
        ({"SpeechResult": "Book an appointment.", "Confidence": "0.9"}, "/book_appointment"),
        ({"SpeechResult": "/restart", "Confidence": "0.9"}, "restart"),
    ],
)
def test_keypad_and_spoken_choices_map_to_payloads(served, fields, expected):
    call = Caller(served)
    call.ring()
    call.answer(**fields)
    assert served.agent.messages[-1].text == expected


@pytest.mark.services
def test_dtmf_order_number_is_read_back_digit_by_digit(served):
    call = Caller(served)
    call.ring()
    call.answer(Digits="1")
    assert call.heard == "What's your order number?"
    assert gather_of(call.root).get("numDigits") is None
    call.answer(Digits="482913")
    assert served.agent.messages[-1].text == "482913"
    assert '<say-as interpret-as="digits">482913</say-as> is on its way' in say_ssml(call.root)
    assert call.heard == "Order 4 8 2 9 1 3 is on its way."


@pytest.mark.services
def test_silence_is_reprompted_once_then_the_call_ends(served, redis):
    call = Caller(served)
    call.ring()
    greeting = call.heard
    call.answer()
    assert call.heard == "Sorry, I didn't catch that. " + greeting
    assert gather_of(call.root).get("numDigits") == "1"  # the choices still work
    call.answer()
    assert [child.tag for child in call.root] == ["Say", "Hangup"]
    assert len(served.agent.messages) == 1
    call.status("completed")
    kinds = [(e["kind"], e["details"].get("count")) for e in voice.read_events(redis, call.sid)]
    assert kinds == [("no_input", 1), ("no_input", 2), ("call_completed", None)]


@pytest.mark.services
def test_an_answer_after_silence_resets_the_count(served, redis):
    call = Caller(served)
    call.ring()
    call.answer()
    call.answer(Digits="1")
    call.answer()
    assert call.heard.startswith("Sorry, I didn't catch that.") and call.root.find("Gather") is not None


@pytest.mark.services
def test_barge_in_and_low_confidence_are_recorded(served, redis):
    call = Caller(served)
    call.ring()
    call.answer(SpeechResult="where is my order", Confidence="0.2")
    events = voice.read_events(redis, call.sid)
    assert [e["kind"] for e in events] == ["low_confidence", "barge_in"]
    customer = served.agent.messages[0].sender_id
    assert {e["customer_id"] for e in events} == {customer}
    assert events[1]["details"]["input"] == "speech" and events[1]["details"]["prompt_seconds"] > 5
    meta = served.agent.messages[-1].metadata
    assert meta["barge_in"] is True and meta["low_confidence"] is True


@pytest.mark.services
def test_input_after_the_prompt_is_not_a_barge_in(served, redis):
    call = Caller(served)
    call.ring()
    state = voice.CallState.load(redis, "twilio_voice", call.sid)
    state.prompt_at -= 60  # the greeting was said a minute ago
    state.save(redis)
    call.answer(SpeechResult="where is my order", Confidence="0.9")
    assert [e["kind"] for e in voice.read_events(redis, call.sid)] == []


@pytest.mark.services
def test_a_retried_turn_gets_the_same_answer_once(served):
    call = Caller(served)
    call.ring()
    action = gather_of(call.root).get("action")
    first = call.answer(Digits="1").text
    again = call.post(action, [("CallSid", call.sid), ("From", call.caller), ("Digits", "1")]).text
    assert again == first
    assert [m.text for m in served.agent.messages] == ["/greet", "/check_order"]
    duplicate_call = Caller(served, sid=call.sid)
    assert duplicate_call.ring().text == first  # a repeated call webhook replays the last prompt


@pytest.mark.services
def test_goodbye_hangs_up_and_the_call_counts_as_completed(served, redis):
    call = Caller(served)
    call.ring()
    call.answer(SpeechResult="bye", Confidence="0.9")
    assert [child.tag for child in call.root] == ["Say", "Hangup"]
    assert call.status("completed").text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    completed = [e for e in voice.read_events(redis, call.sid) if e["kind"] == "call_completed"]
    assert completed[0]["details"]["ended_by"] == "bot"
    assert "caller_hangup" not in [e["kind"] for e in voice.read_events(redis, call.sid)]


@pytest.mark.services
@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled", "completed"])
def test_status_callbacks_are_recorded(served, redis, status):
    call = Caller(served, sid=f"CA{status}")
    assert call.status(status).status_code == 200
    stored = redis.hgetall(voice.CallState.key("twilio_voice", call.sid))
    assert stored[b"status"] == status.encode() and f"status:{status}".encode() in stored
    kinds = [e["kind"] for e in voice.read_events(redis, call.sid)]
    assert kinds == (["caller_hangup", "call_completed"] if status == "completed" else ["call_failed"])
    assert served.agent.messages == []


@pytest.mark.services
def test_a_status_callback_on_the_call_url_is_understood(served, redis):
    call = Caller(served)
    call.post("/webhook", [("CallSid", call.sid), ("From", CALLER), ("CallStatus", "no-answer")])
    assert call.reply.status_code == 200 and served.agent.messages == []
    assert [e["kind"] for e in voice.read_events(redis, call.sid)] == ["call_failed"]


@pytest.mark.services
def test_the_prefetch_starts_with_the_call(served, redis):
    call = Caller(served)
    call.ring()
    customer = served.agent.messages[0].sender_id
    deadline = time.monotonic() + 10
    while prefetch.get_cached(customer, "profile") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert prefetch.get_cached(customer, "profile") == {"channels": ["twilio_voice"], "last_channel": "twilio_voice"}


@pytest.mark.services
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, {"X-Twilio-Signature": ""}],
)
def test_unsigned_or_badly_signed_requests_are_refused(served, headers):
    call = Caller(served)
    call.post("/webhook", [("CallSid", call.sid), ("From", CALLER)], headers=headers)
    assert call.reply.status_code == 403 and served.agent.messages == []


@pytest.mark.services
def test_a_signature_for_other_parameters_or_another_url_is_refused(served):
    call = Caller(served)
    url = served.url + "/webhook"
    signed_for = sign_request(TOKEN, url, [("CallSid", call.sid), ("From", "+14155550000")])
    assert call.post("/webhook", [("CallSid", call.sid), ("From", CALLER)], headers=signed_for).status_code == 403
    other_url = sign_request(TOKEN, served.url + "/gather", [("CallSid", call.sid), ("From", CALLER)])
    assert call.post("/webhook", [("CallSid", call.sid), ("From", CALLER)], headers=other_url).status_code == 403
    assert served.agent.messages == []


@pytest.mark.services
@pytest.mark.parametrize(
    "body, params, content_type",
    [
        ("CallSid=CA1&From=%2B14155552671&broken", [("CallSid", "CA1"), ("From", CALLER), ("broken", "")], None),
        ("CallSid=CA1&From=%FF%FE", [("CallSid", "CA1"), ("From", "\ufffd\ufffd")], None),
        ("From=%2B14155552671", [("From", CALLER)], None),
        ('{"CallSid": "CA1"}', [], "application/json"),
    ],
)
def test_malformed_bodies_are_bad_requests(served, body, params, content_type):
    url = served.url + "/webhook"
    headers = sign_request(TOKEN, url, params)
    if content_type:
        headers["Content-Type"] = content_type
    reply = requests.post(url, data=body.encode(), headers=headers, timeout=30)
    assert reply.status_code == 400, reply.text
    assert served.agent.messages == []


@pytest.mark.services
def test_an_oversized_body_is_refused(served):
    params = [("CallSid", "CA1"), ("From", CALLER), ("SpeechResult", "x" * 300_000)]
    assert Caller(served).post("/gather?turn=1", params).status_code == 413


@pytest.mark.services
def test_an_unknown_call_on_the_action_url_is_answered(served, redis):
    call = Caller(served, sid="CA-never-seen")
    call.post("/gather?turn=7", [("CallSid", call.sid), ("From", CALLER), ("SpeechResult", "482913"), ("Confidence", "0.9")])
    assert call.heard == "Order 4 8 2 9 1 3 is on its way."
    assert urlsplit(gather_of(call.root).get("action")).query == "turn=1"
    assert served.agent.messages[-1].metadata["channel_user_id"] == CALLER
    call = Caller(served, sid="CA-never-seen-either", caller="anonymous")
    call.post("/gather", [("CallSid", call.sid), ("From", "anonymous")])
    assert call.heard == "Sorry, I didn't catch that."


@pytest.mark.services
def test_a_failing_bot_gets_an_apology_not_an_error(served):
    call = Caller(served)
    call.ring()
    call.answer(SpeechResult="crash", Confidence="0.9")
    assert call.heard == voice.TROUBLE and gather_of(call.root) is not None
    call.answer(SpeechResult="silent", Confidence="0.9")
    gather = gather_of(call.root)
    assert list(gather) == []  # nothing to say: just listen


@pytest.mark.services
def test_an_internal_failure_still_answers_the_caller(served, monkeypatch):
    def broken(*_):
        raise ConnectionError("redis down")

    monkeypatch.setattr(served.channel, "record_events", broken)
    call = Caller(served)
    call.ring()
    assert [child.tag for child in call.root] == ["Say", "Hangup"] and "technical trouble" in call.heard


@pytest.mark.services
def test_anonymous_callers_are_not_one_customer(served):
    for sid in ("CA-anon-1", "CA-anon-2"):
        Caller(served, sid=sid, caller="anonymous").ring()
    first, second = served.agent.messages
    assert first.sender_id != second.sender_id
    assert first.metadata["channel_user_id"] == "call:CA-anon-1"


@pytest.mark.services
def test_outbound_calls_identify_the_called_customer(served):
    call = Caller(served, caller="+18005551212")
    call.post("/webhook", [("CallSid", call.sid), ("From", "+18005551212"), ("To", CALLER),
                           ("Direction", "outbound-api"), ("CallStatus", "in-progress")])
    assert served.agent.messages[-1].metadata["channel_user_id"] == CALLER


@pytest.mark.services
def test_the_public_base_url_is_what_twilio_signs(redis):
    channel = TwilioVoiceInput.from_credentials({"auth_token": TOKEN, "public_base_url": "https://voice.example.com/cs/"})
    with serve_channel(channel, EchoAgent(bot)) as running:
        public = "https://voice.example.com/cs/webhooks/twilio_voice/webhook"
        params = [("CallSid", "CA-proxy"), ("From", CALLER)]
        local = requests.post(running.url + "/webhook", data=params, headers=sign_request(TOKEN, running.url + "/webhook", params))
        assert local.status_code == 403
        reply = requests.post(running.url + "/webhook", data=params, headers=sign_request(TOKEN, public, params))
        root = assert_valid_twiml(reply.content)
        assert gather_of(root).get("action") == "https://voice.example.com/cs/webhooks/twilio_voice/gather?turn=1"
        turn = "https://voice.example.com/cs/webhooks/twilio_voice/gather?turn=1"
        params = [("CallSid", "CA-proxy"), ("From", CALLER), ("Digits", "1")]
        reply = requests.post(running.url + "/gather?turn=1", data=params, headers=sign_request(TOKEN, turn, params))
        assert reply.status_code == 200 and running.agent.messages[-1].text == "/check_order"


# -------------------------------------------------------- links, sent elsewhere


@contextlib.contextmanager
def serve_channels(channels, agent):
    """Several channels in one app, as ``rasa run`` registers them."""
    Sanic.test_mode = True
    app = configure_app(channels, enable_api=False)
    app.ctx.agent = agent
    server = ServerThread(app).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.services
def test_links_go_to_the_customers_whatsapp_and_are_announced(redis, recorder):
    wa_id = CALLER.lstrip("+")
    identity.resolve("whatsapp", wa_id, phone=wa_id, verified_phone=True)
    whatsapp = WhatsAppInput.from_credentials({"verify_token": "v", "app_secret": "s", "access_token": "t",
                                               "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": recorder.url})
    phone = TwilioVoiceInput.from_credentials({"auth_token": TOKEN})
    agent = EchoAgent(bot)
    with serve_channels([phone, whatsapp], agent) as server:
        class Served:
            url = f"{server.url}/webhooks/twilio_voice"
        call = Caller(Served)
        call.ring()
        call.answer(SpeechResult="link please", Confidence="0.9")
        assert call.heard == "Track it here. I've sent the link to your WhatsApp."
        assert "track.example" not in call.reply.text
        recorder.wait_for(1)
        sent = recorder.requests[-1]
        assert sent.path.endswith(f"/{p.BUSINESS_PHONE_NUMBER_ID}/messages")
        assert "https://track.example/1Z999AA10123456784" in sent.body.decode()
        assert agent.messages[0].sender_id == identity.channel_identity("whatsapp", wa_id).customer_id


@pytest.mark.services
def test_links_are_left_out_without_a_messaging_channel(served):
    call = Caller(served, caller="+14155550199")
    call.ring()
    call.answer(SpeechResult="link please", Confidence="0.9")
    assert call.heard == "Track it here."
