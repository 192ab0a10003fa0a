"""Masking at ingestion through the real webhooks: Rasa, Redis and logs only ever see placeholders and tokens."""
import json
import logging

import pytest
import requests

from connectors.webchat import WebchatInput
from connectors.webchat.visitors import visitor_token
from tests.connectors.harness import serve_channel
from tests.connectors.test_consent import Telegram, Whatsapp, telegram, whatsapp
from threadline import outbound_failures, pii
from threadline.keys import Keys

pytestmark = pytest.mark.services

CARD, IBAN, EMAIL, PHONE = "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "rita.q@example.org", "+44 20 7946 0958"
TEXT = f"card {CARD}, iban {IBAN}, mail {EMAIL}, phone {PHONE}, order 482913, zip 94105, $12.50 on 2024-05-12"
RAW = (CARD, CARD.replace(" ", ""), IBAN, IBAN.replace(" ", ""), EMAIL, PHONE, "7946 0958")


def redis_dump(redis):
    dump = []
    for key in redis.scan_iter(match=Keys().prefix + ":*"):
        kind = redis.type(key)
        if kind == b"string":
            dump.append(redis.get(key) or b"")
        elif kind == b"list":
            dump += redis.lrange(key, 0, -1)
        elif kind == b"hash":
            dump += [k + b"=" + v for k, v in redis.hgetall(key).items()]
        elif kind == b"set":
            dump += list(redis.smembers(key))
    return b"\n".join(dump).decode("utf-8", "replace")


def check_masked(text):
    for raw in RAW:
        assert raw not in text, raw
    assert "<CREDIT_CARD>" in text and "<IBAN_CODE>" in text and "@token.invalid" in text and "<PHONE_NUMBER:" in text
    assert "482913" in text and "94105" in text and "$12.50" in text and "2024-05-12" in text


@pytest.mark.parametrize("kind", ["whatsapp", "telegram"])
def test_messaging_webhooks_mask_before_rasa(kind, recorder, redis, caplog):
    channel = whatsapp(recorder.url) if kind == "whatsapp" else telegram(recorder.url)
    with caplog.at_level(logging.DEBUG), serve_channel(channel) as served:
        chat = (Whatsapp if kind == "whatsapp" else Telegram)(served)
        assert chat.say(TEXT).status_code == 200
        (message,) = served.agent.messages
        check_masked(message.text)
        sent = json.dumps([r.json for r in chat.sends(recorder)])  # the echo bot repeats what it read
        assert not any(raw in sent for raw in RAW)
    assert not any(raw in redis_dump(redis) for raw in RAW)
    assert not any(raw in caplog.text for raw in RAW)


def test_webchat_masks_before_rasa(redis):
    with serve_channel(WebchatInput.from_credentials({})) as served:
        reply = requests.post(served.url + "/webhook",
                              json={"sender": visitor_token("visitor07-a1b2c3d4e5f6"), "message": TEXT}, timeout=30)
        assert reply.status_code == 200
        (message,) = served.agent.messages
        check_masked(message.text)
    assert not any(raw in redis_dump(redis) for raw in RAW)


def test_undelivered_messages_are_kept_scrubbed(redis):
    failure = outbound_failures.record("whatsapp", "c_x", {"text": f"card {CARD} for {EMAIL}"}, f"HTTP 400: {EMAIL}")
    assert CARD not in json.dumps(failure.message) and EMAIL not in failure.error
    assert pii.placeholder("CREDIT_CARD") in failure.message["text"]
