"""Rate limits on the webhooks, over real HTTP, and whose address counts.

A limit answers 429 with ``Retry-After``; the sender's message is not lost (it
was never processed, so the platform's retry delivers it). ``X-Forwarded-For``
is believed only from ``THREADLINE_TRUSTED_PROXIES``: anyone else writing the
header is still counted as themselves.
"""
import json

import pytest
import requests

from connectors.telegram import TelegramInput
from tests.connectors.harness import EchoAgent, serve_channel
from tests.support import payloads as p
from threadline import limits

SECRET = "telegram-secret-token"
pytestmark = pytest.mark.services


def update(number, user=9):
    return {"update_id": number, "message": {"message_id": number, "from": {"id": user, "first_name": "A"},
                                             "chat": {"id": user, "type": "private"}, "text": f"hello {number}"}}


def post(served, body, **headers):
    return requests.post(served.url + "/webhook", data=json.dumps(body),
                         headers={**p.telegram_headers(SECRET), **headers}, timeout=30)


@pytest.fixture
def limited(recorder, redis, monkeypatch, request):
    """A Telegram webhook with the limits given by the test's ``limits`` mark."""
    for name, value in request.node.get_closest_marker("limits").kwargs.items():
        monkeypatch.setenv(name, str(value))
    channel = TelegramInput.from_credentials({"bot_token": "7000000001:AAH-test", "secret_token": SECRET,
                                              "api_base": recorder.url})
    with serve_channel(channel, EchoAgent()) as served:
        yield served


@pytest.mark.limits(RATE_LIMIT_PER_SOURCE=3)
def test_one_address_over_its_limit_gets_429_with_retry_after(limited):
    answers = [post(limited, update(n, user=n)) for n in range(1, 5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "too many requests from this address" in refused.json()["error"]
    assert len(limited.agent.messages) == 3  # the refused one never reached the bot


@pytest.mark.limits(RATE_LIMIT_PER_SOURCE=3)
def test_a_forwarded_address_from_an_untrusted_peer_is_not_believed(limited):
    # An attacker rotating X-Forwarded-For is still one address.
    answers = [post(limited, update(n, user=n), **{"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(1, 5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]


@pytest.mark.limits(RATE_LIMIT_PER_SOURCE=3, THREADLINE_TRUSTED_PROXIES="127.0.0.1")
def test_behind_a_trusted_proxy_each_client_has_its_own_limit(limited):
    office = [post(limited, update(n, user=n), **{"X-Forwarded-For": "198.51.100.7"}) for n in range(1, 5)]
    other = post(limited, update(10, user=10), **{"X-Forwarded-For": "198.51.100.8"})
    assert [a.status_code for a in office] == [200, 200, 200, 429]
    assert other.status_code == 200


@pytest.mark.limits(RATE_LIMIT_PER_SENDER=2)
def test_one_sender_over_its_limit_gets_429_and_the_message_is_kept_for_the_retry(limited, redis):
    answers = [post(limited, update(n, user=42)) for n in range(1, 4)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "too many messages from this sender" in answers[-1].json()["error"]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert [m.text for m in limited.agent.messages] == ["hello 1", "hello 2"]
    # The refused update was released, not marked done: once the window passes it is processed.
    for key in redis.scan_iter(match="*:limit:*snd-telegram*"):
        redis.delete(key)
    assert post(limited, update(3, user=42)).status_code == 200
    assert [m.text for m in limited.agent.messages] == ["hello 1", "hello 2", "hello 3"]


@pytest.mark.limits(RATE_LIMIT_PER_SENDER=2)
def test_a_redelivered_update_is_not_counted_against_its_sender(limited):
    """The rate limit and the claim are one script: a duplicate is answered before it is counted."""
    answers = [post(limited, update(1, user=43)) for _ in range(4)] + [post(limited, update(2, user=43))]
    assert [a.status_code for a in answers] == [200] * 5
    assert [m.text for m in limited.agent.messages] == ["hello 1", "hello 2"]
    assert post(limited, update(3, user=43)).status_code == 429


def test_client_address_rules():
    trusted = limits.parse_networks(["10.0.0.0/8", "127.0.0.1"])
    headers = {"x-forwarded-for": "198.51.100.1, 203.0.113.9, 10.1.2.3"}
    # The first hop (from the right) that is not a trusted proxy is the client.
    assert limits.client_address("10.0.0.5", headers, trusted) == "203.0.113.9"
    assert limits.client_address("192.0.2.1", headers, trusted) == "192.0.2.1"  # untrusted peer: its own address
    assert limits.client_address("10.0.0.5", {}, trusted) == "10.0.0.5"
    assert limits.client_address("10.0.0.5", headers, []) == "10.0.0.5"  # no proxies configured
    assert limits.forwarded_scheme("10.0.0.5", {"x-forwarded-proto": "https"}, trusted, "http") == "https"
    assert limits.forwarded_scheme("192.0.2.1", {"x-forwarded-proto": "https"}, trusted, "http") == "http"
    with pytest.raises(ValueError, match="not an address"):
        limits.parse_networks(["proxy.internal"])
