"""WhatsApp connector: parsing and signatures (unit), and the webhook over real HTTP."""
import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
import requests

from connectors.base import KIND_BUTTON, KIND_IGNORED, KIND_LOCATION, KIND_MEDIA, KIND_TEXT, KIND_UNSUPPORTED
from connectors.whatsapp import WhatsAppInput, message_status, signature_for
from tests.connectors.harness import EchoAgent, serve_channel
from tests.support import payloads as p
from threadline import identity, linking, outbound_failures

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "whatsapp"
WA_ID = "16505551234"
SECRET = "app-secret-for-tests"
TOKEN = "EAAG-access-token-for-tests"


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_channel(api_base="http://127.0.0.1:9"):
    return WhatsAppInput.from_credentials(
        {
            "verify_token": "verify-me",
            "app_secret": SECRET,
            "access_token": TOKEN,
            "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID,
            "api_base": api_base,
        }
    )


class FakeRequest:
    def __init__(self, headers=None):
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}


# ------------------------------------------------------------------------ unit


def test_missing_credential_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)
    with pytest.raises(Exception, match="WHATSAPP_APP_SECRET"):
        WhatsAppInput.from_credentials({"verify_token": "v", "access_token": "t", "phone_number_id": "1"})


def test_credentials_fall_back_to_environment_and_default_api_base(monkeypatch):
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "from-env")
    channel = WhatsAppInput.from_credentials(
        {"verify_token": "v", "app_secret": "${WHATSAPP_APP_SECRET}", "access_token": "t", "phone_number_id": "1",
         "api_base": ""}
    )
    assert channel.config["app_secret"] == "from-env"
    assert channel.config["api_base"] == "https://graph.facebook.com/v21.0"
    assert WhatsAppInput.name() == "whatsapp"


def test_signature_check_accepts_only_the_exact_hmac():
    channel = make_channel()
    body = json.dumps(fixture("text")).encode()
    good = signature_for(body, SECRET)
    assert good == p.sign_whatsapp(body, SECRET)
    assert channel.verify(FakeRequest({"X-Hub-Signature-256": good}), body)
    assert channel.verify(FakeRequest({"X-Hub-Signature-256": good.upper().replace("SHA256=", "sha256=")}), body)
    assert not channel.verify(FakeRequest({"X-Hub-Signature-256": good}), body + b" ")
    assert not channel.verify(FakeRequest({"X-Hub-Signature-256": signature_for(body, "other")}), body)
    assert not channel.verify(FakeRequest({"X-Hub-Signature-256": good[7:]}), body)
    assert not channel.verify(FakeRequest({}), body)


@pytest.mark.parametrize(
    "name, kind, content, extra",
    [
        ("text", KIND_TEXT, "Where is my order 4471?", {}),
        ("interactive_button_reply", KIND_BUTTON, "/track_order", {"button_title": "Track order"}),
        ("interactive_list_reply", KIND_BUTTON, '/choose_slot{"slot":"tue-10"}', {"button_title": "Tue 10:00"}),
        ("template_button", KIND_BUTTON, "/affirm", {"button_title": "Yes, please"}),
        ("location", KIND_LOCATION, "location: 37.483307,-122.148981",
         {"location": {"latitude": 37.483307, "longitude": -122.148981, "name": "Philz Coffee",
                       "address": "101 Forest Ave, Palo Alto, CA 94301"}}),
        ("image", KIND_MEDIA, None, {"media": {"type": "image", "id": "1479537139650973", "mime_type": "image/jpeg"}}),
        ("image_with_caption", KIND_MEDIA, "The router shows a red light", {}),
        ("unsupported", KIND_UNSUPPORTED, None, {"type": "unsupported"}),
        ("reaction", KIND_IGNORED, None, {"type": "reaction"}),
    ],
)
def test_parse_published_payloads(name, kind, content, extra):
    (envelope,) = make_channel().parse(None, fixture(name))
    assert envelope.kind == kind
    assert envelope.content == content
    assert envelope.channel_user_id == WA_ID
    assert envelope.phone == "+16505551234" and envelope.phone_verified
    assert envelope.profile_name == "Sheena Nelson"
    for key, value in extra.items():
        assert envelope.extra[key] == value


def test_parse_keeps_order_and_skips_statuses():
    envelopes = make_channel().parse(None, fixture("two_messages"))
    assert [e.text for e in envelopes] == ["Hi", "I need help with my order"]
    assert make_channel().parse(None, fixture("statuses")) == []


def test_parse_user_without_phone_number_uses_business_scoped_id():
    (envelope,) = make_channel().parse(None, fixture("bsuid_text"))
    assert envelope.channel_user_id == "US.13491208655302741918"
    assert envelope.phone is None and not envelope.phone_verified
    assert envelope.extra["username"] == "@sheena"


def test_messages_for_another_business_number_are_ignored():
    payload = p.whatsapp_text_payload(WA_ID, "hi", "wamid.x", phone_number_id="999")
    (envelope,) = make_channel().parse(None, payload)
    assert envelope.kind == KIND_IGNORED


@pytest.mark.parametrize("payload", [[], {"entry": "x"}, {"object": "page"}, "text"])
def test_parse_rejects_payloads_of_the_wrong_shape(payload):
    from connectors.base import BadPayload

    with pytest.raises(BadPayload):
        make_channel().parse(None, payload)


# ----------------------------------------------------------------- over HTTP


@pytest.fixture
def wa(recorder, redis):
    channel = make_channel(recorder.url)
    with serve_channel(channel) as served:
        served.recorder = recorder
        served.redis = redis
        yield served


def post(served, payload, secret=SECRET, headers=None):
    raw, signed = p.signed_whatsapp_request(payload, secret)
    return requests.post(served.url + "/webhook", data=raw, headers={**signed, **(headers or {})}, timeout=30)


def sent(served, count=1):
    return [r.json for r in served.recorder.wait_for(count)]


MESSAGES_PATH = f"/{p.BUSINESS_PHONE_NUMBER_ID}/messages"


@pytest.mark.services
def test_health_and_subscription_handshake(wa):
    assert requests.get(wa.url + "/").json() == {"status": "ok", "channel": "whatsapp"}
    ok = requests.get(wa.url + "/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                                   "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    bad = requests.get(wa.url + "/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                    "hub.challenge": "1158201444"})
    assert bad.status_code == 403 and "1158201444" not in bad.text


@pytest.mark.services
def test_text_message_reaches_rasa_and_reply_is_sent(wa):
    assert post(wa, fixture("text")).status_code == 200
    (message,) = wa.agent.messages
    assert message.text == "Where is my order 4471?"
    assert message.input_channel == "whatsapp"
    meta = message.metadata
    assert meta["channel"] == "whatsapp" and meta["channel_user_id"] == WA_ID
    assert meta["message_id"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUE5OEJBMTAwMDEA"
    assert meta["trust"] == "verified" and meta["profile_name"] == "Sheena Nelson"
    assert len(meta["trace_id"]) == 32
    assert message.sender_id == identity.resolve("whatsapp", WA_ID).customer_id
    (request,) = wa.recorder.wait_for(1)
    assert request.path == MESSAGES_PATH
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"body": "You said: Where is my order 4471?", "preview_url": False},
    }


@pytest.mark.services
def test_three_buttons_become_reply_buttons(wa):
    post(wa, p.whatsapp_text_payload(WA_ID, "buttons 3", "wamid.b3"))
    (body,) = sent(wa)
    assert body["type"] == "interactive"
    assert body["interactive"] == {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": f'/choose{{"n":{i}}}', "title": f"Option {i}"}}
                               for i in (1, 2, 3)]},
    }


@pytest.mark.services
def test_long_and_colliding_button_titles_are_shortened_and_unique(recorder, redis):
    def reply(message):
        return [{"text": "**Which** one?", "buttons": [
            {"title": "Track my order status now", "payload": "/track"},
            {"title": "Track my order status later", "payload": "/later"},
        ]}]

    with serve_channel(make_channel(recorder.url), EchoAgent(reply)) as served:
        served.recorder = recorder
        post(served, p.whatsapp_text_payload(WA_ID, "hi", "wamid.long"))
        (body,) = sent(served)
    titles = [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]]
    assert titles == ["Track my order…", "Track my order… (2)"]
    assert all(len(t) <= 20 for t in titles)
    assert body["interactive"]["body"]["text"] == "*Which* one?"


@pytest.mark.services
def test_four_to_ten_buttons_become_a_list(wa):
    post(wa, p.whatsapp_text_payload(WA_ID, "buttons 5", "wamid.b5"))
    (body,) = sent(wa)
    interactive = body["interactive"]
    assert interactive["type"] == "list"
    assert interactive["action"]["button"] == "Options"
    rows = interactive["action"]["sections"][0]["rows"]
    assert rows == [{"id": f'/choose{{"n":{i}}}', "title": f"Option {i}"} for i in range(1, 6)]


@pytest.mark.services
def test_more_than_ten_buttons_become_numbered_text_and_a_number_reply_maps_back(wa):
    post(wa, p.whatsapp_text_payload(WA_ID, "buttons 12", "wamid.b12"))
    (body,) = sent(wa)
    assert body["type"] == "text"
    lines = body["text"]["body"].split("\n")
    assert lines[0] == "Pick one" and lines[2] == "1. Option 1" and lines[-1] == "12. Option 12"
    post(wa, p.whatsapp_text_payload(WA_ID, "11", "wamid.n11"))
    assert wa.agent.messages[-1].text == '/choose{"n":11}'
    assert wa.agent.messages[-1].metadata["chosen_option"] == 11
    # The options applied to that one message only.
    post(wa, p.whatsapp_text_payload(WA_ID, "11", "wamid.n11b"))
    assert wa.agent.messages[-1].text == "11"


@pytest.mark.services
def test_button_reply_forwards_the_payload(wa):
    post(wa, fixture("interactive_button_reply"))
    assert wa.agent.messages[0].text == "/track_order"
    assert wa.agent.messages[0].metadata["kind"] == "button"


@pytest.mark.services
def test_typed_intent_syntax_is_neutralised(wa):
    post(wa, p.whatsapp_text_payload(WA_ID, '/inform{"order_id":"999"}', "wamid.inj"))
    assert not wa.agent.messages[0].text.startswith("/")


@pytest.mark.services
def test_several_messages_in_one_delivery_are_processed_in_order(wa):
    post(wa, fixture("two_messages"))
    assert [m.text for m in wa.agent.messages] == ["Hi", "I need help with my order"]
    assert [b["text"]["body"] for b in sent(wa, 2)] == ["You said: Hi", "You said: I need help with my order"]


@pytest.mark.services
def test_same_delivery_twice_is_processed_once(wa):
    assert post(wa, fixture("text")).status_code == 200
    assert post(wa, fixture("text")).status_code == 200
    assert len(wa.agent.messages) == 1
    time.sleep(0.2)
    assert len(wa.recorder.requests) == 1


@pytest.mark.services
def test_wrong_or_missing_signature_is_refused_and_nothing_is_stored(wa):
    raw = json.dumps(fixture("text")).encode()
    wrong = requests.post(wa.url + "/webhook", data=raw, headers={"X-Hub-Signature-256": signature_for(raw, "x")})
    missing = requests.post(wa.url + "/webhook", data=raw)
    assert wrong.status_code == 403 and missing.status_code == 403
    assert wa.agent.messages == []
    assert [k for k in wa.redis.scan_iter(match="tltest*", count=1000) if b":limit:" not in k] == []
    assert wa.recorder.requests == []


@pytest.mark.services
def test_malformed_json_is_a_bad_request(wa):
    raw = b'{"object": "whatsapp_business_account", "entry": ['
    response = requests.post(wa.url + "/webhook", data=raw, headers={"X-Hub-Signature-256": p.sign_whatsapp(raw, SECRET)})
    assert response.status_code == 400
    assert wa.agent.messages == []


@pytest.mark.services
def test_oversized_body_is_refused(wa):
    raw = json.dumps({"object": "whatsapp_business_account", "entry": [], "pad": "x" * 300_000}).encode()
    response = requests.post(wa.url + "/webhook", data=raw, headers={"X-Hub-Signature-256": p.sign_whatsapp(raw, SECRET)})
    assert response.status_code == 413
    assert wa.agent.messages == []


@pytest.mark.services
def test_unknown_message_type_gets_a_polite_reply(wa, caplog):
    caplog.set_level(logging.INFO, logger="connectors.base")
    assert post(wa, fixture("unsupported")).status_code == 200
    assert wa.agent.messages == []
    (body,) = sent(wa)
    assert body["type"] == "text" and "only read text" in body["text"]["body"]
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


@pytest.mark.services
def test_image_with_caption_reaches_the_bot_and_without_caption_gets_the_polite_reply(wa):
    post(wa, fixture("image_with_caption"))
    post(wa, fixture("image"))
    assert [m.text for m in wa.agent.messages] == ["The router shows a red light"]
    assert wa.agent.messages[0].metadata["media"]["type"] == "image"
    bodies = sent(wa, 2)
    assert "only read text" in bodies[1]["text"]["body"]


@pytest.mark.services
def test_reaction_is_ignored_quietly(wa):
    assert post(wa, fixture("reaction")).status_code == 200
    time.sleep(0.2)
    assert wa.agent.messages == [] and wa.recorder.requests == []


@pytest.mark.services
def test_statuses_are_recorded_and_not_sent_to_the_bot(wa):
    assert post(wa, fixture("statuses")).status_code == 200
    assert wa.agent.messages == []
    delivered = message_status("wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1QjY0RTA3RjQ1NzdBOTQyRTkA", wa.redis)
    failed = message_status("wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1QjY0RTA3RjQ1NzdBOTQyRTkB", wa.redis)
    assert delivered["delivered"] == "1749416383" and delivered["recipient_id"] == WA_ID
    assert "failed" in failed and json.loads(failed["errors"])[0]["code"] == 131047


@pytest.mark.services
def test_user_without_phone_number_is_answered_by_business_scoped_id(wa):
    post(wa, fixture("bsuid_text"))
    (message,) = wa.agent.messages
    assert message.metadata["channel_user_id"] == "US.13491208655302741918"
    assert message.metadata["trust"] == "low"
    (body,) = sent(wa)
    assert body["recipient"] == "US.13491208655302741918" and "to" not in body


@pytest.mark.services
def test_link_code_links_the_whatsapp_user_to_an_existing_customer(wa):
    web = identity.resolve("telegram", "777001")
    code = linking.issue_link_code(web.customer_id)
    post(wa, p.whatsapp_text_payload(WA_ID, f"  Link {code} ", "wamid.link"))
    (message,) = wa.agent.messages
    assert message.text == f"LINK {code}"
    assert message.sender_id == web.customer_id
    result = message.metadata["link_result"]
    assert (result["ok"], result["reason"], result["pending"]) == (True, None, False)
    assert identity.address_for(web.customer_id, "whatsapp") == WA_ID
    post(wa, p.whatsapp_text_payload(WA_ID, "link 000000", "wamid.link2"))
    assert wa.agent.messages[-1].metadata["link_result"]["ok"] is False


@pytest.mark.services
def test_previous_channel_is_reported(wa):
    customer = identity.resolve("whatsapp", WA_ID).customer_id
    identity.record_channel_use(customer, "telegram")
    post(wa, fixture("text"))
    assert wa.agent.messages[0].metadata["previous_channel"] == "telegram"


@pytest.mark.services
def test_long_markdown_reply_is_converted_and_split(recorder, redis):
    paragraph = "**Note:** " + "word " * 500
    text = "\n\n".join([paragraph.strip()] * 3)

    with serve_channel(make_channel(recorder.url), EchoAgent(lambda m: [{"text": text}])) as served:
        served.recorder = recorder
        post(served, p.whatsapp_text_payload(WA_ID, "hi", "wamid.split"))
        bodies = [b["text"]["body"] for b in sent(served, 2)]
    assert all(len(b) <= 4096 for b in bodies)
    assert bodies[0].startswith("*Note:* word")
    assert "**" not in "".join(bodies)
    assert sum(b.count("*Note:*") for b in bodies) == 3


@pytest.mark.services
def test_outside_the_window_only_the_template_is_sent(recorder, redis):
    channel = make_channel(recorder.url)
    customer = identity.resolve("whatsapp", WA_ID, phone=WA_ID, verified_phone=True).customer_id
    output = channel.get_output_channel()
    asyncio.run(output.send_text_message(customer, "Your order **4471** shipped.\nTrack it here."))
    (request,) = recorder.wait_for(1)
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "template",
        "template": {
            "name": "threadline_follow_up",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "text": "Your order *4471* shipped. Track it here."}]}],
        },
    }


@pytest.mark.services
def test_platform_throttling_is_retried_after_retry_after(wa):
    wa.recorder.respond(MESSAGES_PATH, status=429, headers={"Retry-After": "1"}, times=1,
                        json={"error": {"code": 130429, "message": "Rate limit hit"}})
    started = time.monotonic()
    assert post(wa, fixture("text")).status_code == 200
    first, second = wa.recorder.wait_for(2)
    assert second.time - first.time >= 0.95
    assert time.monotonic() - started >= 0.95
    assert second.json == first.json


@pytest.mark.services
def test_platform_down_is_retried_then_kept_as_failed_and_logged(wa, caplog):
    caplog.set_level(logging.ERROR, logger="connectors.outbound")
    wa.recorder.respond(MESSAGES_PATH, status=500)
    assert post(wa, fixture("text")).status_code == 200
    assert len(wa.recorder.wait_for(4)) == 4
    time.sleep(0.2)
    assert len(wa.recorder.requests) == 4  # bounded
    (stored,) = outbound_failures.pending(redis=wa.redis)
    assert stored.channel == "whatsapp" and "HTTP 500" in stored.error
    assert stored.message == {"text": "You said: Where is my order 4471?"}
    assert TOKEN not in json.dumps(stored.__dict__) and WA_ID not in json.dumps(stored.__dict__)
    assert any("failed for good" in r.getMessage() for r in caplog.records)


@pytest.mark.services
def test_buttons_outside_the_window_go_as_template_with_numbered_options(recorder, redis):
    channel = make_channel(recorder.url)
    customer = identity.resolve("whatsapp", WA_ID, phone=WA_ID, verified_phone=True).customer_id
    buttons = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
    asyncio.run(channel.get_output_channel().send_text_with_buttons(customer, "Still need help?", buttons))
    (request,) = recorder.wait_for(1)
    assert request.json["type"] == "template"
    parameter = request.json["template"]["components"][0]["parameters"][0]["text"]
    assert parameter == "Still need help? 1. Yes 2. No"
    with serve_channel(channel) as served:
        post(served, p.whatsapp_text_payload(WA_ID, "2", "wamid.after-template"))
        assert served.agent.messages[0].text == "/deny"


@pytest.mark.services
def test_list_rows_keep_long_titles_in_the_description(recorder, redis):
    long_titles = ["Change my delivery address", "Cancel the whole order now", "Talk to a person", "Other"]

    def reply(message):
        return [{"text": "How can I help?", "buttons": [{"title": t, "payload": f"/p{i}"} for i, t in enumerate(long_titles)]}]

    with serve_channel(make_channel(recorder.url), EchoAgent(reply)) as served:
        served.recorder = recorder
        post(served, p.whatsapp_text_payload(WA_ID, "hi", "wamid.rows"))
        (body,) = sent(served)
    rows = body["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == ["Change my delivery…", "Cancel the whole order…", "Talk to a person", "Other"]
    assert rows[0]["description"] == "Change my delivery address" and "description" not in rows[2]
    assert all(len(r["title"]) <= 24 for r in rows)
