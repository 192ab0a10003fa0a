"""Proactive journeys end to end: the real rasa server's worker, the real webhooks, the platform stand-in.

The project's own ``service_reminder`` runs with its waits shortened by
``JOURNEY_WAIT_SCALE`` (48 h become about 3.5 s): a WhatsApp reminder, no
reply, a nudge on the customer's next channel (Telegram), no reply, then a
phone call whose TwiML speaks the journey's line, and the callee's "yes,
Tuesday works" continues the same conversation into the booking. Outside
WhatsApp's 24-hour window the step's template goes instead; an opt-out
between steps and a reply on the web chat stop the rest.
"""
import re
import subprocess
import sys
import time
import uuid
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest
import requests

from connectors.twilio_voice import sign_request
from tests.conftest import TEST_SECRETS, free_port
from tests.support.payloads import signed_whatsapp_request, whatsapp_text_payload
from tests.support.recorder import Recorder
from tests.support.web import WebChat
from threadline import identity
from threadline.journeys import service, store

pytestmark = [pytest.mark.e2e, pytest.mark.services]

ACCOUNT_SID = "AC" + "0" * 32
CALLER = "+15550100000"
CALLS = f"/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
SCALE = 0.00002  # 48 h -> 3.5 s, 24 h -> 1.7 s


@pytest.fixture(scope="module")
def journey_stack():
    from threadline.stack import Stack

    with Recorder() as api:
        env = dict(TEST_SECRETS)
        rasa_port = free_port()
        env.update(
            WHATSAPP_API_BASE=api.url + "/graph", TELEGRAM_API_BASE=api.url + "/telegram",
            TWILIO_API_BASE=api.url + "/twilio", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_CALLER_NUMBER=CALLER,
            TWILIO_PUBLIC_BASE_URL=f"http://127.0.0.1:{rasa_port}",
            JOURNEY_WORKER="on", JOURNEY_WAIT_SCALE=str(SCALE), JOURNEY_QUIET_HOURS="off",
            JOURNEY_FREQUENCY_CAP="off", JOURNEY_POLL_SECONDS="0.2",
        )
        running = Stack(rasa_port=rasa_port, action_port=free_port(), env=env).start()
        running.platform_api = api
        try:
            yield running
        finally:
            running.stop()


class Customer:
    """A WhatsApp customer who may also be on Telegram and the web chat."""

    def __init__(self, stack):
        self.stack = stack
        self.api = stack.platform_api
        self.wa_id = "1415556" + str(uuid.uuid4().int)[:4]
        self.id = None

    def whatsapp(self, text):
        payload = whatsapp_text_payload(self.wa_id, text, f"wamid.{uuid.uuid4().hex}", name="Sam")
        body, headers = signed_whatsapp_request(payload, TEST_SECRETS["WHATSAPP_APP_SECRET"])
        reply = requests.post(f"{self.stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        self.id = identity.channel_identity("whatsapp", self.wa_id).customer_id
        return self.id

    def known_without_writing(self):
        """On WhatsApp from an earlier import, never written: the 24-hour window is closed."""
        self.id = identity.resolve("whatsapp", self.wa_id, phone=self.wa_id, verified_phone=True).customer_id
        return self.id

    def also_on_telegram(self):
        self.telegram_id = str(int(str(uuid.uuid4().int)[:9]))
        identity.link("telegram", self.telegram_id, self.id, "low")

    def to_whatsapp(self, since=0):
        return [r.json for r in self.api.requests[since:] if r.path.endswith("/messages")
                and (r.json or {}).get("to") == self.wa_id]

    def tracker(self):
        reply = requests.get(f"{self.stack.rasa_url}/conversations/{self.id}/tracker",
                             params={"token": TEST_SECRETS["RASA_AUTH_TOKEN"], "include_events": "ALL"}, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


def twilio_post(url, params):
    return requests.post(url, data=params, headers=sign_request(TEST_SECRETS["TWILIO_AUTH_TOKEN"], url, params),
                         timeout=60)


def spoken(twiml):
    return re.sub(r"<[^>]+>", "", ElementTree.tostring(ElementTree.fromstring(twiml), encoding="unicode"))


def instance_of(customer):
    (listed,) = store.list_instances(customer_ref=customer.id)
    return listed


def test_reminder_then_next_channel_then_a_call_that_books_tuesday(journey_stack):
    api = journey_stack.platform_api
    sam = Customer(journey_stack)
    sam.whatsapp("hi")
    sam.also_on_telegram()
    call_sid = "CA" + uuid.uuid4().hex
    api.respond(CALLS, status=201, json={"sid": call_sid, "status": "queued"})
    since = len(api.requests)
    started = subprocess.run(
        [sys.executable, "-m", "threadline.journeys", "start", "service_reminder", "--customer", sam.id,
         "--set", "vehicle=Golf"], capture_output=True, text=True, timeout=120, env=journey_stack.env)
    assert started.returncode == 0, started.stderr

    # 1. WhatsApp, inside the window: the reminder with reply buttons.
    reminder = wait_for(lambda: sam.to_whatsapp(since), what="the WhatsApp reminder")[0]
    assert reminder["type"] == "interactive"
    assert "Golf is due for its yearly service" in reminder["interactive"]["body"]["text"]
    assert [b["reply"]["title"] for b in reminder["interactive"]["action"]["buttons"]] == ["Yes, book it", "Not now"]

    # 2. No reply: the nudge goes to the next channel of the step, Telegram.
    nudge = wait_for(lambda: [r.json for r in api.requests[since:] if r.path.endswith("/sendMessage")
                              and str((r.json or {}).get("chat_id")) == sam.telegram_id], what="the Telegram nudge")[0]
    assert "still needs its service" in nudge["text"]

    # 3. No reply: Twilio's Calls resource, then the answer speaks the journey's line.
    (call,) = wait_for(lambda: api.requests_to(CALLS), what="the call")
    assert call.form["To"] == ["+" + sam.wa_id] and call.form["From"] == [CALLER]
    answer_url = call.form["Url"][0]
    assert urlsplit(answer_url).path == "/webhooks/twilio_voice/outbound"
    assert parse_qs(urlsplit(answer_url).query)["token"]
    base = [("CallSid", call_sid), ("AccountSid", ACCOUNT_SID), ("Direction", "outbound-api"), ("From", CALLER),
            ("To", "+" + sam.wa_id), ("CallStatus", "in-progress")]
    answered = twilio_post(answer_url, base)
    assert answered.status_code == 200, answered.text
    assert "calling about the yearly service for your Golf" in spoken(answered.text)
    gather = ElementTree.fromstring(answered.text).find("Gather").get("action")

    # The callee's answer continues the same conversation, in the journey's context: Tuesday is booked next.
    reply = twilio_post(gather, base + [("SpeechResult", "yes, Tuesday works"), ("Confidence", "0.93")])
    assert reply.status_code == 200, reply.text
    assert "tuesday" in spoken(reply.text).lower(), spoken(reply.text)

    tracker = sam.tracker()
    journey_turns = [e for e in tracker["events"] if e["event"] == "bot" and (e.get("metadata") or {}).get("journey")]
    assert [(e["metadata"]["journey_step"], e["metadata"]["delivery_channel"]) for e in journey_turns] == [
        ("reminder", "whatsapp"), ("nudge", "telegram"), ("call", "twilio_voice")]
    assert tracker["active_loop"]["name"] == "appointment_form"
    assert tracker["slots"]["appointment_service"] == "repair"
    assert "tuesday" in (tracker["slots"]["appointment_time"] or "").lower() or tracker["slots"].get("appointment_partial_date")
    listed = instance_of(sam)
    assert listed["status"] == "completed"
    assert [s["send"]["state"] for s in listed["steps"]] == ["sent", "sent", "sent"]


def test_outside_the_24_hour_window_the_steps_template_is_sent(journey_stack):
    api = journey_stack.platform_api
    lee = Customer(journey_stack)
    lee.known_without_writing()
    since = len(api.requests)
    service.start("service_reminder", lee.id, {"vehicle": "Polo"})
    (template,) = wait_for(lambda: lee.to_whatsapp(since), what="the template")[:1]
    assert template["type"] == "template"
    assert template["template"]["name"] == "service_reminder"
    assert template["template"]["language"] == {"code": "en_US"}
    parameter = template["template"]["components"][0]["parameters"][0]["text"]
    assert "Polo is due for its yearly service" in parameter and "1. Yes, book it" in parameter
    service.cancel(instance_of(lee)["id"], "test")


def test_an_opt_out_between_steps_suppresses_the_rest(journey_stack):
    api = journey_stack.platform_api
    kim = Customer(journey_stack)
    kim.whatsapp("hi")
    since = len(api.requests)
    service.start("service_reminder", kim.id, {"vehicle": "Up"})
    wait_for(lambda: kim.to_whatsapp(since), what="the reminder")
    kim.whatsapp("STOP")
    time.sleep(48 * 3600 * SCALE + 2)  # past the nudge's wait
    listed = instance_of(kim)
    assert listed["status"] in ("replied", "cancelled"), listed
    sent_after = [m for m in kim.to_whatsapp(since) if "service" in str(m)]
    assert len(sent_after) == 1  # the reminder only; the STOP confirmation is not a journey send
    assert [s["send"] for s in listed["steps"][1:]] in ([], [None])


def test_a_reply_on_the_web_chat_cancels_the_rest(journey_stack):
    api = journey_stack.platform_api
    ada = Customer(journey_stack)
    ada.whatsapp("hi")
    web = WebChat(journey_stack)
    web.say("hello")
    assert web.customer_id and web.customer_id != ada.id
    identity.link("webchat", web.visitor, ada.id, "low")  # what a confirmed link code does
    assert web.customer_id == ada.id
    since = len(api.requests)
    service.start("service_reminder", ada.id, {"vehicle": "Fiesta"})
    wait_for(lambda: ada.to_whatsapp(since), what="the reminder")
    web.say("what are your opening hours?")
    listed = wait_for(lambda: instance_of(ada)["status"] == "replied" and instance_of(ada), what="the journey ending")
    assert listed["ended_reason"] == "the customer replied"
    time.sleep(48 * 3600 * SCALE + 2)
    assert len([m for m in ada.to_whatsapp(since) if "service" in str(m)]) == 1
    assert not [r for r in api.requests[since:] if r.path.endswith("/sendMessage")]
