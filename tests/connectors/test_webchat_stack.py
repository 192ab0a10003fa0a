"""The web chat against the real rasa server, action server and trained model.

REST and socket.io conversations, a proactive message through Rasa's
``trigger_intent`` API, and a conversation that continues from the web chat on
Telegram with the link code the widget asks for.
"""
import asyncio
import random
import re

import pytest
import redis as redis_lib
import requests

from connectors.webchat import visitor_from_token
from tests.conftest import TEST_SECRETS
from tests.support.payloads import telegram_headers
from tests.support.socket_visitor import SocketVisitor
from threadline import identity

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def webhook(stack) -> str:
    return f"{stack.rasa_url}/webhooks/webchat/webhook"


def say(stack, sender: str, text: str):
    reply = requests.post(webhook(stack), json={"sender": sender, "message": text}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def new_visitor(stack):
    """(visitor id, visitor token) from the web chat's session route."""
    issued = requests.post(f"{stack.rasa_url}/webhooks/webchat/session", timeout=30).json()
    return issued["visitor"], issued["sender"]


def customer_of(stack, visitor: str) -> str:
    """The customer id the stack's identity index gives a web visitor."""
    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    try:
        return identity.channel_identity("webchat", visitor, client).customer_id
    finally:
        client.close()


def test_order_status_over_rest(stack):
    visitor, token = new_visitor(stack)
    (greeting,) = say(stack, token, "hi")
    assert greeting["recipient_id"] == visitor
    assert [b["title"] for b in greeting["buttons"]][0] == "Track an order"
    track = greeting["buttons"][0]["payload"]
    assert "order number" in say(stack, token, track)[0]["text"]
    assert "Order 482913 is **on its way**" in say(stack, token, "482913")[0]["text"]


def test_link_code_continues_the_conversation_on_telegram(stack):
    visitor, token = new_visitor(stack)
    say(stack, token, "hi")
    (reply,) = say(stack, token, "/link_channel")
    assert "send this message there within 10 minutes" in reply["text"]
    code = re.search(r"LINK (\d{6})", reply["text"]).group(1)

    chat_id = random.randint(10**8, 10**9)
    update = {
        "update_id": random.randint(10**8, 10**9),
        "message": {
            "message_id": 1,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ana"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Ana"},
            "date": 1749416383,
            "text": f"/start {code}",
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
        },
    }
    telegram = requests.post(
        f"{stack.rasa_url}/webhooks/telegram/webhook", json=update,
        headers=telegram_headers(TEST_SECRETS["TELEGRAM_SECRET_TOKEN"]), timeout=60,
    )
    assert telegram.status_code == 200

    def to_chat(recorded):
        return [r.json for r in recorded if str((r.json or {}).get("chat_id")) == str(chat_id)]

    sent = to_chat(stack.platform_api.wait_for(lambda recorded: to_chat(recorded), timeout=30))
    assert any("connected" in (message.get("text") or "") for message in sent), sent
    customer = customer_of(stack, visitor)
    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert identity.address_for(customer, "telegram", client) == str(chat_id)
    finally:
        client.close()


async def test_socketio_conversation_and_a_proactive_message(stack):
    async with SocketVisitor(stack.rasa_url) as visitor:
        await visitor.say("hi")
        greeting = await visitor.expect("bot_uttered")
        assert greeting["quick_replies"][0]["title"] == "Track an order"

        await visitor.say(greeting["quick_replies"][0]["payload"])
        assert "order number" in (await visitor.expect("bot_uttered"))["text"]
        await visitor.say("482913")
        assert "Order 482913 is **on its way**" in (await visitor.expect("bot_uttered"))["text"]

        customer = customer_of(stack, visitor_from_token(visitor.session))
        url = f"{stack.rasa_url}/conversations/{customer}/trigger_intent"
        anonymous = await asyncio.to_thread(requests.post, url, params={"output_channel": "webchat"},
                                            json={"name": "greet"}, timeout=60)
        assert anonymous.status_code == 401  # the HTTP API is never anonymous
        triggered = await asyncio.to_thread(
            requests.post, url, params={"output_channel": "webchat", "token": TEST_SECRETS["RASA_AUTH_TOKEN"]},
            json={"name": "greet"}, timeout=60,
        )
        assert triggered.status_code == 200, triggered.text
        pushed = await visitor.expect("bot_uttered")
        assert pushed["text"]
