"""Undelivered messages: kept without the address or the platform body, expire, replayed once each."""
import asyncio
import json
import time

import pytest

from connectors import replay
from connectors.whatsapp import WhatsAppInput, _window_key
from threadline import identity, outbound_failures
from threadline.keys import Keys

pytestmark = pytest.mark.services
WA_ID = "14155552671"


@pytest.fixture
def whatsapp_env(monkeypatch, recorder, redis, tmp_path):
    for name, value in {"WHATSAPP_VERIFY_TOKEN": "v", "WHATSAPP_APP_SECRET": "s", "WHATSAPP_ACCESS_TOKEN": "t0ken",
                        "WHATSAPP_PHONE_NUMBER_ID": "123", "WHATSAPP_API_BASE": recorder.url + "/graph",
                        "OUTBOUND_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    credentials = tmp_path / "credentials.yml"
    credentials.write_text("connectors.whatsapp.WhatsAppInput:\n")
    return credentials


def _undelivered(recorder, redis):
    customer = identity.resolve("whatsapp", WA_ID, phone=WA_ID, verified_phone=True, redis=redis).customer_id
    redis.set(_window_key(customer), "1", ex=3600)
    recorder.respond("/graph", status=500, times=1)
    output = WhatsAppInput.from_credentials({}).get_output_channel()
    asyncio.run(output.send_response(customer, {"text": "Your appointment is confirmed."}))
    assert not output.last_report.ok
    return customer


def test_a_failed_send_is_kept_without_address_or_platform_body(whatsapp_env, recorder, redis):
    customer = _undelivered(recorder, redis)
    (kept,) = outbound_failures.pending(redis=redis)
    assert (kept.channel, kept.customer_id, kept.message) == ("whatsapp", customer, {"text": "Your appointment is confirmed."})
    stored = json.dumps([redis.get(k).decode() for k in redis.scan_iter(match="*:outbound:failed:*")])
    assert WA_ID not in stored and "t0ken" not in stored and "messaging_product" not in stored
    ttl = redis.ttl(Keys().outbound_failed_item(kept.id))
    assert 6 * 86400 < ttl <= 7 * 86400  # they expire


def test_replay_sends_each_message_once(whatsapp_env, recorder, redis):
    _undelivered(recorder, redis)
    before = len(recorder.requests)

    async def two_replays_at_once():
        return await asyncio.gather(replay.replay(whatsapp_env), replay.replay(whatsapp_env))

    first, second = asyncio.run(two_replays_at_once())
    assert first["delivered"] + second["delivered"] == 1
    sent = [r.json for r in recorder.requests[before:]]
    assert [m["text"]["body"] for m in sent] == ["Your appointment is confirmed."] and sent[0]["to"] == WA_ID
    assert outbound_failures.pending(redis=redis) == []
    assert asyncio.run(replay.replay(whatsapp_env)) == {"delivered": 0, "failed_again": 0, "skipped": 0}


def test_a_replay_that_fails_again_is_kept_again(whatsapp_env, recorder, redis):
    _undelivered(recorder, redis)
    recorder.respond("/graph", status=503, times=1)
    assert asyncio.run(replay.replay(whatsapp_env))["failed_again"] == 1
    (kept,) = outbound_failures.pending(redis=redis)
    assert "503" in kept.error


def test_expired_failures_are_dropped_from_the_index(redis, monkeypatch):
    outbound_failures.record("whatsapp", "c_old", {"text": "old"}, "HTTP 500", redis=redis)
    keys = Keys()
    redis.zadd(keys.outbound_failed(), {"ancient": time.time() - 30 * 86400})
    assert outbound_failures.count(redis=redis) == 1
