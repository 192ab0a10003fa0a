"""A push channel's replies go out once the turn is stored, and a stored turn's replies are never lost or doubled.

Through the real stack (rasa server, trained model, action server, Redis). A
replica killed after saving a turn and before sending its replies leaves the
delivery id ``done:<customer>``; the platform's retry then gets the stored
replies, once. A replica killed before the save has sent nothing, so the
retry's turn is the only one the customer hears.
"""
import uuid

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.support.payloads import signed_whatsapp_request, telegram_headers, telegram_text_update, whatsapp_text_payload
from tests.support.recorder import platform_default
from threadline import identity
from threadline.keys import Keys
from threadline.redis_client import get_client

pytestmark = [pytest.mark.e2e, pytest.mark.services]


class WhatsApp:
    channel = "whatsapp"

    def __init__(self, stack):
        self.stack = stack
        self.address = "1415556" + str(uuid.uuid4().int)[:4]

    def post(self, message_id, text):
        body, headers = signed_whatsapp_request(
            whatsapp_text_payload(self.address, text, message_id), TEST_SECRETS["WHATSAPP_APP_SECRET"])
        return requests.post(f"{self.stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers,
                             timeout=60)

    def new_id(self):
        return f"wamid.{uuid.uuid4().hex}"

    @staticmethod
    def replies(requests_seen):
        return [r.json["text"]["body"] if r.json.get("type") == "text" else r.json["interactive"]["body"]["text"]
                for r in requests_seen if r.path.endswith("/messages") and isinstance(r.json, dict)
                and r.json.get("type") in ("text", "interactive")]

    def mine(self, requests_seen):
        return [r for r in requests_seen if isinstance(r.json, dict) and r.json.get("to") == self.address]


class Telegram:
    channel = "telegram"

    def __init__(self, stack):
        self.stack = stack
        self.address = int(str(uuid.uuid4().int)[:9])

    def post(self, message_id, text):
        update = telegram_text_update(self.address, text, int(message_id), message_id=int(message_id))
        return requests.post(f"{self.stack.rasa_url}/webhooks/telegram/webhook", json=update,
                             headers=telegram_headers(TEST_SECRETS["TELEGRAM_SECRET_TOKEN"]), timeout=60)

    def new_id(self):
        return str(uuid.uuid4().int)[:8]

    @staticmethod
    def replies(requests_seen):
        return [r.json["text"] for r in requests_seen if r.path.endswith("/sendMessage")]

    def mine(self, requests_seen):
        return [r for r in requests_seen if isinstance(r.json, dict) and str(r.json.get("chat_id")) == str(self.address)]


@pytest.fixture(params=[WhatsApp, Telegram], ids=["whatsapp", "telegram"])
def customer(request, stack):
    return request.param(stack)


def _seen(stack, customer):
    return customer.mine(stack.platform_api.requests)


def _customer_id(customer):
    return identity.channel_identity(customer.channel, str(customer.address)).customer_id


def test_replies_are_sent_after_the_turn_is_stored(stack, customer):
    """When the platform receives a reply, the customer's message is already stored (its id is ``done:``)."""
    redis = get_client()
    message_id = customer.new_id()
    key = Keys().dedupe(customer.channel, message_id)
    states = []
    original = stack.platform_api.default

    def watching(request):
        if customer.mine([request]):
            states.append(redis.get(key))
        return platform_default(request)

    stack.platform_api.default = watching
    try:
        assert customer.post(message_id, "hi").status_code == 200
    finally:
        stack.platform_api.default = original
    assert states, "the bot sent no reply"
    expected = f"done:{_customer_id(customer)}".encode()
    assert set(states) == {expected}
    assert redis.get(key) == b"sent"  # and, once they went out, the turn is complete


def test_a_stored_turn_whose_replies_were_not_sent_is_answered_once_on_the_retry(stack, customer):
    redis = get_client()
    message_id = customer.new_id()
    key = Keys().dedupe(customer.channel, message_id)
    before = len(stack.platform_api.requests)
    assert customer.post(message_id, "where is my order").status_code == 200
    first = customer.replies(customer.mine(stack.platform_api.requests[before:]))
    assert first
    customer_id = _customer_id(customer)

    # What a replica killed after the save and before its sends leaves behind.
    redis.set(key, f"done:{customer_id}")
    before = len(stack.platform_api.requests)
    assert customer.post(message_id, "where is my order").status_code == 200
    resent = customer.replies(customer.mine(stack.platform_api.requests[before:]))
    assert resent == first
    assert redis.get(key) == b"sent"

    before = len(stack.platform_api.requests)
    assert customer.post(message_id, "where is my order").status_code == 200  # now a duplicate
    assert customer.mine(stack.platform_api.requests[before:]) == []

    tracker = requests.get(f"{stack.rasa_url}/conversations/{customer_id}/tracker",
                           params={"token": TEST_SECRETS["RASA_AUTH_TOKEN"], "include_events": "ALL"}, timeout=30).json()
    assert [e.get("message_id") for e in tracker["events"] if e["event"] == "user"].count(message_id) == 1
