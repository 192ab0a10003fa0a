"""The shared connector pipeline, through a minimal channel built on the base."""
import asyncio
import json

import pytest
import requests

from connectors import base
from connectors.base import (
    DisabledChannel,
    Envelope,
    ThreadlineInput,
    ThreadlineOutput,
    alias_payload,
    constant_time_equals,
    resolve_payload,
)
from connectors.linking import LINK_CODE_RE
from tests.connectors.harness import EchoAgent, serve_channel
from threadline import identity, outbound_failures
from threadline.message import TurnMetadata


class AcmeOutput(ThreadlineOutput):
    channel = "acme"

    async def send_text_message(self, recipient_id, text, **kwargs):
        await self.sender.post(self.config["api_base"] + "/send", {"to": await self.address(recipient_id), "text": text})

    async def send_custom_json(self, recipient_id, json_message, **kwargs):
        await self.sender.post(self.config["api_base"] + "/custom", json_message)


class AcmeInput(ThreadlineInput):
    """A platform that posts {"messages": [{"from", "id", "text", "kind"}]} with a shared secret."""

    channel = "acme"
    credential_env = {"secret": "ACME_SECRET", "api_base": "ACME_API_BASE"}
    credential_defaults = {"api_base": "https://api.acme.example"}

    def verify(self, request, body):
        return constant_time_equals(request.headers.get("x-acme-secret"), self.config["secret"])

    def parse(self, request, payload):
        if not isinstance(payload, dict):
            raise base.BadPayload("not an object")
        return [
            Envelope("acme", m["from"], m["id"], text=m.get("text"), payload=m.get("payload"),
                     kind=m.get("kind", "text"), locale="de-DE", profile_name="Max")
            for m in payload.get("messages", [])
        ]

    def get_output_channel(self):
        return AcmeOutput(self.config, self.sender)


def deliver(served, *messages, secret="s3cret", raw=None):
    data = raw if raw is not None else json.dumps({"messages": list(messages)})
    return requests.post(served.url + "/webhook", data=data, headers={"X-Acme-Secret": secret}, timeout=30)


@pytest.fixture
def acme(recorder, redis):
    with serve_channel(AcmeInput.from_credentials({"secret": "s3cret", "api_base": recorder.url})) as served:
        served.recorder = recorder
        yield served


# ------------------------------------------------------------------ unit


class PartialInput(AcmeInput):
    channel = "partial"
    credential_env = {"secret": "ACME_SECRET", "token": "ACME_TOKEN"}
    credential_defaults = {}


def test_credentials_from_file_environment_or_default(monkeypatch):
    monkeypatch.delenv("ACME_SECRET", raising=False)
    monkeypatch.delenv("ACME_TOKEN", raising=False)
    off = AcmeInput.from_credentials({})
    assert isinstance(off, DisabledChannel) and off.missing == ["ACME_SECRET"] and off.name() == "acme"
    with pytest.raises(Exception) as error:  # some settings but not all: a mistake, said loudly
        PartialInput.from_credentials({"secret": "x"})
    assert "ACME_TOKEN" in str(error.value) and "ACME_SECRET" not in str(error.value)
    monkeypatch.setenv("ACME_SECRET", "env-secret")
    channel = AcmeInput.from_credentials({"secret": "${ACME_SECRET}"})
    assert channel.config == {"secret": "env-secret", "api_base": "https://api.acme.example"}
    assert AcmeInput.from_credentials(None).config["secret"] == "env-secret"


def test_link_code_pattern():
    for text in ("link 123456", "LINK 123456", "  Link   123456 ", "/start 123456", "/START 000001"):
        assert LINK_CODE_RE.match(text).group(1) in ("123456", "000001")
    for text in ("link 12345", "link 1234567", "please link 123456", "link123456", "/start abc123"):
        assert LINK_CODE_RE.match(text) is None


def test_constant_time_equals():
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd") and not constant_time_equals(None, "abc")
    assert not constant_time_equals("", "") and not constant_time_equals("é", "e")


def test_envelope_content_and_readability():
    assert Envelope("c", "u", "m", text="  ").content is None
    assert Envelope("c", "u", "m", text="Yes", payload="/affirm", kind="button").content == "/affirm"
    assert not Envelope("c", "u", "m", kind="media").readable
    assert Envelope("c", "u", "m", text="caption", kind="media").readable
    assert not Envelope("c", "u", "m", text="x", kind="unsupported").readable


@pytest.mark.services
def test_payload_alias_round_trip(redis):
    short = alias_payload("acme", "/affirm", 64, redis)
    assert short == "/affirm"
    long_payload = "/inform" + json.dumps({"note": "x" * 100})
    key = alias_payload("acme", long_payload, 64, redis)
    assert key.startswith("~p:") and len(key) < 64
    assert alias_payload("acme", long_payload, 64, redis) == key
    assert resolve_payload("acme", key, redis) == long_payload
    assert resolve_payload("acme", "~p:unknown", redis) == "~p:unknown"


@pytest.mark.services
def test_internal_notes_and_other_channels_payloads_are_not_sent(recorder, redis):
    output = AcmeInput.from_credentials({"secret": "s", "api_base": recorder.url}).get_output_channel()
    customer = identity.resolve("acme", "u-notes", redis=redis).customer_id

    async def send_all():
        await output.send_response(customer, {"custom": {"internal_note": "VIP customer"}})
        await output.send_response(customer, {"custom": {"type": "internal_note", "text": "x"}})
        await output.send_response(customer, {"custom": {"channel": "whatsapp", "type": "template"}})
        await output.send_response(customer, {"custom": {"channel": "acme", "card": 1}})
        await output.send_response(customer, {"text": "visible"})

    asyncio.run(send_all())
    assert [(r.path, r.json) for r in recorder.wait_for(2)] == [
        ("/custom", {"channel": "acme", "card": 1}),
        ("/send", {"to": "u-notes", "text": "visible"}),
    ]


@pytest.mark.services
def test_an_address_is_never_guessed_from_a_conversation_id(recorder, redis):
    output = AcmeInput.from_credentials({"secret": "s", "api_base": recorder.url}).get_output_channel()
    asyncio.run(output.send_response("14155552671", {"text": "hello stranger"}))
    assert recorder.requests == []
    assert not output.last_report.ok and "no acme address" in output.last_report.errors[0]
    (kept,) = outbound_failures.pending(redis=redis)
    assert (kept.channel, kept.customer_id, kept.message) == ("acme", "14155552671", {"text": "hello stranger"})


# ------------------------------------------------------------ over HTTP


@pytest.mark.services
def test_metadata_and_addressing(acme):
    assert deliver(acme, {"from": "u-1", "id": "m-1", "text": "hello"}).status_code == 200
    (message,) = acme.agent.messages
    who = identity.resolve("acme", "u-1")
    assert message.sender_id == who.customer_id and message.message_id == "m-1"
    assert {k: message.metadata[k] for k in ("channel", "channel_user_id", "message_id", "trust", "locale",
                                             "profile_name", "previous_channel")} == {
        "channel": "acme", "channel_user_id": "u-1", "message_id": "m-1", "trust": "low", "locale": "de-DE",
        "profile_name": "Max", "previous_channel": None}
    from threadline import settings

    typed = TurnMetadata.read(message.metadata, settings.get().secret("metadata_key"))
    assert typed.signed and typed.channel == "acme" and typed.trust.value == "low"
    (request,) = acme.recorder.wait_for(1)
    assert request.json == {"to": "u-1", "text": "You said: hello"}  # customer id mapped back to the address
    deliver(acme, {"from": "u-1", "id": "m-2", "text": "again"})
    assert acme.agent.messages[1].metadata["previous_channel"] == "acme"
    assert acme.agent.messages[0].metadata["trace_id"] != acme.agent.messages[1].metadata["trace_id"]


@pytest.mark.services
def test_health_route(acme):
    assert requests.get(acme.url + "/").json() == {"status": "ok", "channel": "acme"}


@pytest.mark.services
def test_envelopes_of_one_delivery_keep_their_order_and_redeliveries_are_skipped(acme):
    deliver(acme, *[{"from": "u-2", "id": f"m-{i}", "text": str(i)} for i in range(5)])
    deliver(acme, {"from": "u-2", "id": "m-3", "text": "3"}, {"from": "u-2", "id": "m-5", "text": "5"})
    assert [m.text for m in acme.agent.messages] == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.services
def test_failure_before_the_bot_releases_the_message_for_redelivery(acme, monkeypatch):
    real = identity.resolve
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("redis hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(identity, "resolve", flaky)
    refused = deliver(acme, {"from": "u-3", "id": "m-1", "text": "hi"})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert acme.agent.messages == []
    assert deliver(acme, {"from": "u-3", "id": "m-1", "text": "hi"}).status_code == 200
    assert [m.text for m in acme.agent.messages] == ["hi"]


@pytest.mark.services
def test_a_turn_that_was_not_stored_is_processed_again_on_redelivery(recorder, redis):
    class CrashOnce(EchoAgent):
        async def handle_message(self, message):
            self.messages.append(message)
            if len(self.messages) == 1:
                raise RuntimeError("policy crashed before the turn was stored")
            await super().handle_message(message)
            self.messages.pop()

    channel = AcmeInput.from_credentials({"secret": "s3cret", "api_base": recorder.url})
    with serve_channel(channel, CrashOnce()) as served:
        assert deliver(served, {"from": "u-4", "id": "m-1", "text": "hi"}).status_code == 503
        assert deliver(served, {"from": "u-4", "id": "m-1", "text": "hi"}).status_code == 200
        assert deliver(served, {"from": "u-4", "id": "m-1", "text": "hi"}).status_code == 200  # stored: a duplicate
        assert len(served.agent.messages) == 2
        assert [r.json["text"] for r in recorder.wait_for(1)] == ["You said: hi"]


@pytest.mark.services
def test_a_redelivery_while_the_first_is_in_flight_is_told_to_retry(recorder, redis):
    release = asyncio.Event()

    class Slow(EchoAgent):
        async def handle_message(self, message):
            self.messages.append(message)
            for _ in range(200):
                if release.is_set():
                    break
                await asyncio.sleep(0.02)

    import threading

    channel = AcmeInput.from_credentials({"secret": "s3cret", "api_base": recorder.url})
    with serve_channel(channel, Slow()) as served:
        first = {}
        thread = threading.Thread(target=lambda: first.setdefault("r", deliver(served, {"from": "u-9", "id": "m-1",
                                                                                         "text": "hi"})))
        thread.start()
        for _ in range(100):
            if served.agent.messages:
                break
            import time

            time.sleep(0.02)
        second = deliver(served, {"from": "u-9", "id": "m-1", "text": "hi"})
        release.set()
        thread.join(10)
        assert second.status_code == 503 and second.headers["Retry-After"]
        assert first["r"].status_code == 200 and len(served.agent.messages) == 1


@pytest.mark.services
def test_typed_intents_are_neutralised_but_button_payloads_pass(acme):
    deliver(acme, {"from": "u-5", "id": "m-1", "text": '/restart'},
            {"from": "u-5", "id": "m-2", "text": "Yes", "payload": "/affirm", "kind": "button"})
    assert [m.text for m in acme.agent.messages] == ["restart", "/affirm"]


@pytest.mark.services
def test_ignored_and_unreadable_messages(acme):
    deliver(acme, {"from": "u-6", "id": "m-1", "kind": "ignored"}, {"from": "u-6", "id": "m-2", "kind": "media"})
    assert acme.agent.messages == []
    (reply,) = acme.recorder.wait_for(1)
    assert reply.json["text"] == base.UNSUPPORTED_REPLY


@pytest.mark.services
def test_bad_requests(acme, monkeypatch):
    assert deliver(acme, raw="[1, 2").status_code == 400
    assert deliver(acme, raw="[1, 2]").status_code == 400
    assert deliver(acme, raw=b"\xff\xfe").status_code == 400
    assert deliver(acme, {"from": "u", "id": "m", "text": "x"}, secret="nope").status_code == 403
    assert requests.get(acme.url + "/webhook").status_code == 405
    assert acme.agent.messages == []


@pytest.mark.services
def test_size_limit_applies_to_chunked_bodies_and_is_configurable(recorder, redis, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1024")
    channel = AcmeInput.from_credentials({"secret": "s3cret", "api_base": recorder.url})
    assert channel.max_body_bytes == 1024

    def chunks():
        for _ in range(4):
            yield b" " * 400

    with serve_channel(channel) as served:
        response = requests.post(served.url + "/webhook", data=chunks(), headers={"X-Acme-Secret": "s3cret"})
        assert response.status_code == 413
        ok = deliver(served, {"from": "u-7", "id": "m-1", "text": "small"})
        assert ok.status_code == 200 and len(served.agent.messages) == 1
