"""The shared outbound sender against a real local HTTP server."""
import asyncio
import email.utils
import json
import logging
import socket
import time

import pytest

from connectors.outbound import OutboundSender, _parse_retry_after, failed_key


def test_retry_after_values():
    assert _parse_retry_after("3") == 3.0
    assert _parse_retry_after(" 0.5 ") == 0.5
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    in_two = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 < _parse_retry_after(in_two) <= 2.0
    assert _parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def run(coroutine):
    return asyncio.run(coroutine)


def failures(redis):
    return [json.loads(x) for x in redis.lrange(failed_key(), 0, -1)]


@pytest.mark.services
def test_success_needs_one_attempt(recorder, redis):
    sender = OutboundSender("test", redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}, {"Authorization": "Bearer t"}))
    assert result.ok and result.attempts == 1 and result.status == 200
    (request,) = recorder.requests
    assert request.json == {"a": 1} and request.header("Authorization") == "Bearer t"
    assert request.header("Content-Type").startswith("application/json")


@pytest.mark.services
def test_server_errors_back_off_exponentially_then_succeed(recorder, redis):
    recorder.respond("/send", status=503, times=2)
    sender = OutboundSender("test", base_delay=0.1, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 3
    times = [r.time for r in recorder.requests]
    assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19
    assert failures(redis) == []


@pytest.mark.services
def test_retry_after_is_honoured(recorder, redis):
    recorder.respond("/send", status=429, headers={"Retry-After": "1"}, times=1)
    sender = OutboundSender("test", base_delay=0.01, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 2
    first, second = recorder.requests
    assert second.time - first.time >= 0.95


@pytest.mark.services
def test_retry_after_beyond_the_maximum_delay_is_not_retried_and_is_kept(recorder, redis):
    recorder.respond("/send", status=429, headers={"Retry-After": "3600"})
    sender = OutboundSender("test", max_delay=5, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert not result.ok and result.attempts == 1 and len(recorder.requests) == 1
    (stored,) = failures(redis)
    assert "3600" in stored["error"] and stored["status"] == 429


@pytest.mark.services
def test_client_errors_are_not_retried_but_kept(recorder, redis, caplog):
    caplog.set_level(logging.ERROR, logger="connectors.outbound")
    recorder.respond("/", status=400, json={"error": {"message": "Invalid parameter"}})
    sender = OutboundSender("test", redis=redis, secrets=["s3cret"])
    result = run(sender.post(recorder.url + "/s3cret/send", {"text": "hello"}))
    assert not result.ok and result.attempts == 1 and result.json == {"error": {"message": "Invalid parameter"}}
    (stored,) = failures(redis)
    assert stored["channel"] == "test" and stored["body"] == {"text": "hello"}
    assert stored["url"].endswith("/***/send") and "Invalid parameter" in stored["error"]
    assert stored["time"] == pytest.approx(time.time(), abs=30)
    assert any("failed for good" in r.getMessage() and "s3cret" not in r.getMessage() for r in caplog.records)


@pytest.mark.services
def test_connection_errors_are_retried_a_bounded_number_of_times(redis):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    sender = OutboundSender("test", max_attempts=3, base_delay=0.01, redis=redis)
    result = run(sender.post(f"http://127.0.0.1:{port}/send", {"a": 1}))
    assert not result.ok and result.attempts == 3 and result.status is None
    (stored,) = failures(redis)
    assert "Connect" in stored["error"] or "connect" in stored["error"]


@pytest.mark.services
def test_a_slow_platform_times_out_and_is_retried(recorder, redis):
    recorder.respond("/send", status=200, delay=1.0, times=1)
    sender = OutboundSender("test", timeout=0.3, base_delay=0.01, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 2


def test_redis_down_still_logs_the_failed_message(recorder, caplog):
    class BrokenRedis:
        def rpush(self, *args):
            raise ConnectionError("redis is down")

    caplog.set_level(logging.ERROR, logger="connectors.outbound")
    recorder.respond("/send", status=400)
    sender = OutboundSender("test", redis=BrokenRedis())
    result = run(sender.post(recorder.url + "/send", {"text": "keep me"}))
    assert not result.ok
    messages = [r.getMessage() for r in caplog.records]
    assert any("keep me" in m for m in messages) and any("could not store" in m for m in messages)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OUTBOUND_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("OUTBOUND_RETRY_BASE_DELAY", "0.5")
    sender = OutboundSender("test")
    assert sender.max_attempts == 6 and sender.base_delay == 0.5
