"""An agent's messages reach the customer where they are, or the desk says why not.

Through the real stack: a caller's case is answered on the call itself (spoken
at the caller's next turn); a customer who wrote on WhatsApp and then called
from that number is answered on WhatsApp, because a caller id proves nothing.
"""
import uuid

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.e2e.test_voice_calls import TwilioCall, new_number
from tests.support.desk import DeskClient
from tests.support.payloads import signed_whatsapp_request, whatsapp_text_payload
from threadline import identity
from threadline.db import cases

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def desk(stack):
    client = DeskClient(f"{stack.rasa_url}/webhooks/agent")
    return client, client.sign_in("alice", "alice-token")


def whatsapp(stack, wa_id, text):
    body, headers = signed_whatsapp_request(
        whatsapp_text_payload(wa_id, text, f"wamid.{uuid.uuid4().hex}"), TEST_SECRETS["WHATSAPP_APP_SECRET"])
    assert requests.post(f"{stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers,
                         timeout=60).status_code == 200


def open_case(customer):
    """A case for the customer, as the bot opens one (the stack's calls transfer a handoff at once)."""
    return cases.get_case(cases.record_handoff(customer, "customer_request", {"channel": "twilio_voice"}))


def test_an_agents_reply_to_a_caller_is_spoken_on_the_call(stack):
    call = TwilioCall(stack)
    call.ring()
    call.say("where is my order")
    customer = identity.channel_identity("twilio_voice", call.caller).customer_id
    case = open_case(customer)
    client, alice = desk(stack)
    accepted = client.post(alice, case.id, "accept").json()
    assert accepted["ok"] and "Queued on the phone" in accepted["message"]
    replied = client.post(alice, case.id, "reply", text="Hi, this is Alice. I can see your order.").json()
    assert replied["message"] == "Queued on the phone: it is spoken at the caller's next turn."
    call.silence()  # the gather times out: the caller hears the team, not "sorry, I didn't catch that"
    assert "has joined the conversation" in call.heard and "I can see your order" in call.heard
    assert "didn't catch that" not in call.heard
    call.status("completed")
    after = client.post(alice, case.id, "reply", text="Are you still there?").json()
    assert not after["ok"]  # the call is over and the caller has no other channel


def test_a_case_opened_by_a_call_is_answered_on_whatsapp_when_the_caller_id_proves_nothing(stack):
    number = new_number()
    whatsapp(stack, number.lstrip("+"), "hi")
    call = TwilioCall(stack, caller=number)
    call.ring()
    call.say("where is my order")
    customer = identity.channel_identity("whatsapp", number.lstrip("+")).customer_id
    assert identity.channel_identity("twilio_voice", number).customer_id == customer  # joined for continuity
    case = open_case(customer)
    client, alice = desk(stack)
    before = len(stack.platform_api.requests)
    assert client.post(alice, case.id, "accept").json()["message"].endswith("Sent on WhatsApp.")
    replied = client.post(alice, case.id, "reply", text="Hello from the team").json()
    assert replied["message"] == "Sent on WhatsApp."
    sent = [r.json for r in stack.platform_api.requests[before:] if (r.json or {}).get("to") == number.lstrip("+")]
    assert any("Hello from the team" in (m.get("text") or {}).get("body", "") for m in sent), sent
    call.silence()
    assert "Hello from the team" not in call.heard  # never spoken to an unproven caller
