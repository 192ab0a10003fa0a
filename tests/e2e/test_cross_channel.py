"""One customer, three channels, one conversation, through the real webhooks.

An order check begins on WhatsApp, continues in the web chat after a link
code, and finishes on Telegram. The order number is given once; every reply
arrives in its platform's own format (recorded by the stand-in for Meta's and
Telegram's APIs).
"""
import json
import re
import uuid

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.support.payloads import (
    signed_whatsapp_request,
    telegram_headers,
    telegram_text_update,
    whatsapp_text_payload,
)

pytestmark = [pytest.mark.e2e, pytest.mark.services]
ASKS_ORDER_NUMBER = re.compile(r"what's your order number", re.I)


class Customer:
    """Jane, reachable on WhatsApp, the web chat and Telegram."""

    def __init__(self, stack):
        self.stack = stack
        self.api = stack.platform_api
        self.wa_id = "1555" + str(uuid.uuid4().int)[:7]
        self.visitor = f"visitor-{uuid.uuid4().hex[:8]}"
        self.telegram_id = int(str(uuid.uuid4().int)[:9])
        self.update_id = int(str(uuid.uuid4().int)[:8])

    def whatsapp(self, text):
        before = len(self.api.requests)
        payload = whatsapp_text_payload(self.wa_id, text, f"wamid.{uuid.uuid4().hex}", name="Jane")
        body, headers = signed_whatsapp_request(payload, TEST_SECRETS["WHATSAPP_APP_SECRET"])
        reply = requests.post(f"{self.stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return [r.json for r in self.api.requests[before:] if "/messages" in r.path]

    def webchat(self, text):
        reply = requests.post(
            f"{self.stack.rasa_url}/webhooks/webchat/webhook",
            json={"sender": self.visitor, "message": text}, timeout=60,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    def telegram(self, text):
        before = len(self.api.requests)
        self.update_id += 1
        update = telegram_text_update(self.telegram_id, text, self.update_id, message_id=self.update_id)
        reply = requests.post(
            f"{self.stack.rasa_url}/webhooks/telegram/webhook", json=update,
            headers=telegram_headers(TEST_SECRETS["TELEGRAM_SECRET_TOKEN"]), timeout=60,
        )
        assert reply.status_code == 200, reply.text
        return [r.json for r in self.api.requests[before:] if r.path.endswith("/sendMessage")]


def whatsapp_texts(messages):
    texts = []
    for m in messages:
        if m.get("type") == "text":
            texts.append(m["text"]["body"])
        elif m.get("type") == "interactive":
            texts.append(m["interactive"]["body"]["text"])
    return texts


def link_code(texts):
    match = re.search(r"LINK (\d{6})", " ".join(texts))
    assert match, texts
    return match.group(1)


def test_order_check_moves_from_whatsapp_to_web_chat_to_telegram(stack):
    jane = Customer(stack)
    asked = []

    greeting = jane.whatsapp("hi")
    assert greeting[0]["type"] == "interactive" and greeting[0]["interactive"]["type"] == "button"
    assert [b["reply"]["title"] for b in greeting[0]["interactive"]["action"]["buttons"]][0] == "Track an order"
    assert greeting[0]["to"] == jane.wa_id and greeting[0]["messaging_product"] == "whatsapp"

    texts = whatsapp_texts(jane.whatsapp("where is my order?"))
    asked += [t for t in texts if ASKS_ORDER_NUMBER.search(t)]
    assert asked, texts
    code = link_code(whatsapp_texts(jane.whatsapp("can I continue this in the web chat?")))

    # The web chat visitor sends the code: same conversation, told where we were.
    replies = jane.webchat(f"LINK {code}")
    web_texts = [r.get("text", "") for r in replies]
    assert any("connected" in t for t in web_texts), web_texts
    assert any("on WhatsApp" in t and "checking an order" in t for t in web_texts), web_texts
    answer = " ".join(r.get("text", "") for r in jane.webchat("482913"))
    assert "Order 482913 is **on its way**" in answer  # web chat keeps markdown for the widget
    code = link_code([r.get("text", "") for r in jane.webchat("switch to telegram please")])

    # Telegram deep link: /start <code>. Then the customer asks for the address.
    sent = jane.telegram(f"/start {code}")
    assert any("connected" in m["text"] for m in sent), sent
    for message in sent:
        assert message.get("parse_mode") == "MarkdownV2", message
        assert str(message["chat_id"]) == str(jane.telegram_id), message
    sent = jane.telegram("what address is it being delivered to?")
    assert any("postal code" in m["text"] for m in sent), sent
    asked += [m["text"] for m in sent if ASKS_ORDER_NUMBER.search(m["text"])]
    sent = jane.telegram("94105")
    address = " ".join(m["text"] for m in sent)
    assert "221 Mission Street" in address and "482913" in address
    assert "\\." in address  # MarkdownV2 escaping applied

    # The order number was asked for once, before the customer gave it, never after.
    assert len([a for a in asked]) == 1


def test_a_used_link_code_cannot_be_reused(stack):
    jane = Customer(stack)
    code = link_code(whatsapp_texts(jane.whatsapp("give me a link code")))
    assert any("connected" in r.get("text", "") for r in jane.webchat(f"LINK {code}"))
    stranger = Customer(stack)
    refused = " ".join(r.get("text", "") for r in stranger.webchat(f"LINK {code}"))
    assert "didn't work" in refused
