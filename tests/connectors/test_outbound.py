"""The shared outbound sender against a real local HTTP server."""
import asyncio
import email.utils
import logging
import socket
import time

import pytest

from connectors.outbound import OutboundSender, _parse_retry_after, end_report, start_report


def test_retry_after_values():
    assert _parse_retry_after("3") == 3.0
    assert _parse_retry_after(" 0.5 ") == 0.5
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    in_two = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 < _parse_retry_after(in_two) <= 2.0
    assert _parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def run(coroutine):
    return asyncio.run(coroutine)


def reported(coroutine):
    """Run a send inside a response's report, as ``ThreadlineOutput.send_response`` does."""
    async def inside():
        report, token = start_report()
        try:
            return await coroutine, report
        finally:
            end_report(token)

    return asyncio.run(inside())


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
    result, report = reported(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 3
    times = [r.time for r in recorder.requests]
    assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19
    assert report.ok and report.requests == 1


@pytest.mark.services
def test_retry_after_is_honoured(recorder, redis):
    recorder.respond("/send", status=429, headers={"Retry-After": "1"}, times=1)
    sender = OutboundSender("test", base_delay=0.01, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 2
    first, second = recorder.requests
    assert second.time - first.time >= 0.95


@pytest.mark.services
def test_retry_after_beyond_the_maximum_delay_is_not_retried_and_is_reported(recorder, redis):
    recorder.respond("/send", status=429, headers={"Retry-After": "3600"})
    sender = OutboundSender("test", max_delay=5, redis=redis)
    result, report = reported(sender.post(recorder.url + "/send", {"a": 1}))
    assert not result.ok and result.attempts == 1 and len(recorder.requests) == 1
    assert "3600" in report.errors[0] and report.statuses == [429]


@pytest.mark.services
def test_client_errors_are_not_retried_but_reported(recorder, redis, caplog):
    caplog.set_level(logging.ERROR, logger="connectors.outbound")
    recorder.respond("/", status=400, json={"error": {"message": "Invalid parameter"}})
    sender = OutboundSender("test", redis=redis, secrets=["s3cret"])
    result, report = reported(sender.post(recorder.url + "/s3cret/send", {"text": "hello"}))
    assert not result.ok and result.attempts == 1 and result.json == {"error": {"message": "Invalid parameter"}}
    assert "Invalid parameter" in report.errors[0] and report.statuses == [400]
    logged = [r.getMessage() for r in caplog.records]
    assert any("failed for good" in m and "/***/send" in m for m in logged)
    assert not any("s3cret" in m or "hello" in m for m in logged)  # no token, no message text in logs


@pytest.mark.services
def test_connection_errors_are_retried_a_bounded_number_of_times(redis):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    sender = OutboundSender("test", max_attempts=3, base_delay=0.01, redis=redis)
    result, report = reported(sender.post(f"http://127.0.0.1:{port}/send", {"a": 1}))
    assert not result.ok and result.attempts == 3 and result.status is None
    assert "onnect" in report.errors[0]


@pytest.mark.services
def test_a_slow_platform_times_out_and_is_retried(recorder, redis):
    recorder.respond("/send", status=200, delay=1.0, times=1)
    sender = OutboundSender("test", timeout=0.3, base_delay=0.01, redis=redis)
    result = run(sender.post(recorder.url + "/send", {"a": 1}))
    assert result.ok and result.attempts == 2


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OUTBOUND_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("OUTBOUND_RETRY_BASE_DELAY", "0.5")
    sender = OutboundSender("test")
    assert sender.max_attempts == 6 and sender.base_delay == 0.5
