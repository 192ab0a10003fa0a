"""One customer, three channels, one conversation, through the real webhooks.

An order check begins on WhatsApp, continues in the web chat after a link
code, and finishes on Telegram. Each link into a customer with a verified
channel is confirmed there first. The order number is given once; every reply
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
    whatsapp_button_reply_message,
    whatsapp_contact,
    whatsapp_delivery,
    whatsapp_text_payload,
)
from tests.support.web import WebChat
from threadline import identity

pytestmark = [pytest.mark.e2e, pytest.mark.services]
ASKS_ORDER_NUMBER = re.compile(r"what's your order number", re.I)


JANE_WA_ID = "14155550100"  # the demo business customer who owns order 482913


class Customer:
    """Someone reachable on WhatsApp, the web chat and Telegram."""

    def __init__(self, stack, wa_id=None):
        self.stack = stack
        self.api = stack.platform_api
        self.wa_id = wa_id or "1415555" + str(uuid.uuid4().int)[:4]
        self.web = WebChat(stack)
        self.telegram_id = int(str(uuid.uuid4().int)[:9])
        self.update_id = int(str(uuid.uuid4().int)[:8])

    def _post_whatsapp(self, payload):
        before = len(self.api.requests)
        body, headers = signed_whatsapp_request(payload, TEST_SECRETS["WHATSAPP_APP_SECRET"])
        reply = requests.post(f"{self.stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return [r.json for r in self.api.requests[before:] if "/messages" in r.path]

    def whatsapp(self, text):
        return self._post_whatsapp(whatsapp_text_payload(self.wa_id, text, f"wamid.{uuid.uuid4().hex}", name="Jane"))

    def whatsapp_tap(self, button_id, title):
        message = whatsapp_button_reply_message(self.wa_id, button_id, title, f"wamid.{uuid.uuid4().hex}")
        return self._post_whatsapp(whatsapp_delivery(message, contacts=[whatsapp_contact(self.wa_id, "Jane")]))

    def webchat(self, text):
        return self.web.say(text)

    def web_pushed(self, count, timeout=30):
        """What the bot pushed to the web visitor on its own (the widget's event stream)."""
        got = []
        with requests.get(f"{self.web.base}/events", params={"sender": self.web.sender}, stream=True,
                          timeout=timeout) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    got.append(json.loads(line[len("data: "):]))
                    if len(got) == count:
                        return got
        return got

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


def confirmation_buttons(message):
    """The (id, title) of the "Yes, connect it" button of a WhatsApp confirmation request."""
    buttons = message["interactive"]["action"]["buttons"]
    return [(b["reply"]["id"], b["reply"]["title"]) for b in buttons]


def test_order_check_moves_from_whatsapp_to_web_chat_to_telegram(stack):
    jane = Customer(stack, wa_id=JANE_WA_ID)
    asked = []

    greeting = jane.whatsapp("hi")
    assert greeting[0]["type"] == "interactive" and greeting[0]["interactive"]["type"] == "button"
    assert [b["reply"]["title"] for b in greeting[0]["interactive"]["action"]["buttons"]][0] == "Track an order"
    assert greeting[0]["to"] == jane.wa_id and greeting[0]["messaging_product"] == "whatsapp"

    texts = whatsapp_texts(jane.whatsapp("where is my order?"))
    asked += [t for t in texts if ASKS_ORDER_NUMBER.search(t)]
    assert asked, texts
    before = len(stack.platform_api.requests)
    code = link_code(whatsapp_texts(jane.whatsapp("can I continue this in the web chat?")))

    # The web chat visitor sends the code: WhatsApp, the verified channel, is asked first.
    web_texts = [r.get("text", "") for r in jane.webchat(f"LINK {code}")]
    assert any("Almost there" in t and "WhatsApp" in t for t in web_texts), web_texts
    stack.platform_api.wait_for(
        lambda recorded: [r for r in recorded[before:] if "connect it" in json.dumps(r.json or {})], timeout=30)
    asked_on_whatsapp = [r.json for r in stack.platform_api.requests[before:] if "connect it" in json.dumps(r.json or {})]
    (yes, _), (no, _) = confirmation_buttons(asked_on_whatsapp[-1])
    done = whatsapp_texts(jane.whatsapp_tap(yes, "Yes, connect it"))
    assert any("the web chat is now part of this conversation" in t for t in done), done
    assert any("connected" in m.get("text", "") for m in jane.web_pushed(1))

    # The same conversation: told where we were, and the owner sees the details.
    answer = " ".join(r.get("text", "") for r in jane.webchat("482913"))
    assert "on WhatsApp" in answer and "checking an order" in answer, answer
    assert "Order 482913 is **on its way**" in answer and "UPS" in answer  # web chat keeps markdown
    code = link_code([r.get("text", "") for r in jane.webchat("switch to telegram please")])

    # Telegram deep link: /start <code>, confirmed on the web chat that issued it.
    sent = jane.telegram(f"/start {code}")
    assert any("Almost there" in m["text"] for m in sent), sent
    (request,) = [m for m in jane.web_pushed(1) if m.get("buttons")]
    confirm = request["buttons"][0]["payload"]
    assert "connected" not in " ".join(m["text"] for m in sent)
    before = len(stack.platform_api.requests)
    assert "Telegram is now part of this conversation" in " ".join(r.get("text", "") for r in jane.webchat(confirm))
    stack.platform_api.wait_for(
        lambda recorded: [r for r in recorded[before:] if r.path.endswith("/sendMessage")], timeout=30)
    told = [r.json for r in stack.platform_api.requests[before:] if r.path.endswith("/sendMessage")]
    assert any("connected" in m["text"] for m in told), told
    for message in told:
        assert message.get("parse_mode") == "MarkdownV2", message
        assert str(message["chat_id"]) == str(jane.telegram_id), message
    sent = jane.telegram("what address is it being delivered to?")
    asked += [m["text"] for m in sent if ASKS_ORDER_NUMBER.search(m["text"])]
    address = " ".join(m["text"] for m in sent)
    assert "221 Mission Street" in address and "482913" in address
    assert "\\." in address  # MarkdownV2 escaping applied

    # The order number was asked for once, before the customer gave it, never after.
    assert len(asked) == 1


def test_a_used_link_code_cannot_be_reused(stack):
    ana = Customer(stack)
    code = link_code([r.get("text", "") for r in ana.webchat("give me a link code")])
    assert any("connected" in m.get("text", "") for m in ana.telegram(f"LINK {code}"))
    stranger = Customer(stack)
    refused = " ".join(r.get("text", "") for r in stranger.webchat(f"LINK {code}"))
    assert "didn't work" in refused


def test_someone_who_guesses_a_code_is_not_let_in_without_the_owners_yes(stack):
    owner = Customer(stack)
    code = link_code(whatsapp_texts(owner.whatsapp("give me a link code")))
    attacker = Customer(stack)
    told = " ".join(r.get("text", "") for r in attacker.webchat(f"LINK {code}"))
    assert "Almost there" in told
    request = [r.json for r in stack.platform_api.wait_for(
        lambda recorded: [r for r in recorded if r.json and r.json.get("to") == owner.wa_id
                          and "connect it" in json.dumps(r.json)], timeout=30)
        if r.json and r.json.get("to") == owner.wa_id and "connect it" in json.dumps(r.json)][-1]
    (_, _), (no, _) = confirmation_buttons(request)
    assert any("haven't connected" in t for t in whatsapp_texts(owner.whatsapp_tap(no, "No")))
    assert attacker.web.customer_id != identity.channel_identity("whatsapp", owner.wa_id).customer_id
    assert "order number" in " ".join(r.get("text", "") for r in attacker.webchat("where is my order?")).lower()
