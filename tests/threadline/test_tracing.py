"""OpenTelemetry traces: one trace per turn through the real connectors, links across a channel switch.

Spans go to an ``InMemorySpanExporter``. The connectors are served for real
(``tests.connectors.harness``); Rasa's NLU, policy and action-server spans are
checked on a ``MessageProcessor`` with a stub interpreter and policy, against
the real action server app (rasa-sdk's, with Threadline's guard) served in a
thread, and, when a trained model exists, through a real agent as well.
"""
import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest
import requests
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.run import configure_app
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig
from rasa_sdk import Action
from sanic import Sanic

from connectors.twilio_voice import TwilioVoiceInput
from connectors.webchat import WebchatInput, visitor_token
from connectors.whatsapp import WhatsAppInput
from tests.connectors.harness import EchoAgent, ServerThread, serve_channel
from tests.support import payloads as p
from tests.support.recorder import Recorder
from threadline import identity, rasa_patches, redis_client, settings, tracing

pytestmark = pytest.mark.services

WA_ID = "14155550142"
CALLER = "+" + WA_ID
NAME = "Marguerite Okonkwo"
EMAIL = "marguerite.okonkwo@example.com"
WA_TEXT = "Where is my parcel, the blue one?"
WEB_TEXT = "Still waiting for the blue parcel"
APP_SECRET = "app-secret-for-tracing"
TWILIO_TOKEN = "twilio-token-for-tracing"
VISITOR = "visitor07-a1b2c3d4e5f6"
MODEL = Path(__file__).resolve().parents[2] / "models" / "threadline.tar.gz"


class ProbeAction(Action):
    """A custom action the in-process action server runs (registered from this module)."""

    def name(self) -> str:
        return "action_tracing_probe"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="probed")
        return []


@pytest.fixture
def redis(monkeypatch):
    """The connectors' Redis, with a key prefix of this test's own (its keys deleted afterwards)."""
    prefix = "tltrace" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", prefix)
    monkeypatch.setenv("OUTBOUND_RETRY_BASE_DELAY", "0.01")
    client = redis_client.get_client()
    yield client
    keys = list(client.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def spans():
    """Tracing on with an in-memory exporter; ``spans()`` flushes and returns the finished spans."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("rasa", exporter=exporter)

    def finished():
        tracing.flush()
        return list(exporter.get_finished_spans())

    yield finished
    tracing.shutdown()


@pytest.fixture
def recorder():
    with Recorder() as api:
        yield api


def whatsapp(api_base):
    return WhatsAppInput.from_credentials({"verify_token": "v", "app_secret": APP_SECRET, "access_token": "t",
                                           "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": api_base})


def post_whatsapp(url, text, name=NAME):
    payload = p.whatsapp_text_payload(WA_ID, text, f"wamid.{uuid.uuid4().hex}", name=name)
    raw, headers = p.signed_whatsapp_request(payload, APP_SECRET)
    reply = requests.post(url + "/webhooks/whatsapp/webhook", data=raw, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


@contextlib.contextmanager
def serve_channels(channels, agent):
    """Several channels in one app, as ``rasa run`` registers them."""
    Sanic.test_mode = True
    app = configure_app(channels, enable_api=False)
    app.ctx.agent = agent
    server = ServerThread(app).start()
    try:
        yield server
    finally:
        server.stop()


def by_name(found, name):
    return [span for span in found if span.name == name]


def hex_id(number, width=32):
    return format(number, f"0{width}x")


def assert_no_personal_data(found, *values):
    dump = "\n".join(span.to_json() for span in found)
    for value in values:
        assert value not in dump, f"{value!r} appears in a span"


# ----------------------------------------------------------------------- off


def test_tracing_is_off_by_default_and_takes_the_no_op_path(redis, recorder):
    tracing.shutdown()
    assert settings.get().get("TRACING") == "off"
    assert tracing.configure("rasa") is False and not tracing.enabled()
    assert tracing.span("threadline.turn") is tracing._NOOP  # the one shared no-op, nothing built
    assert tracing.inject() == {} and tracing.current_trace_id() is None and tracing._provider is None
    with serve_channel(whatsapp(recorder.url)) as served:
        post_whatsapp(served.server.url, WA_TEXT)
        (message,) = served.agent.messages
    assert len(message.metadata["trace_id"]) == 32
    assert not list(redis.scan_iter(match=settings.get().key_prefix + ":trace:*"))  # no turn kept


def test_a_wrong_tracing_mode_is_refused(monkeypatch):
    monkeypatch.setenv("TRACING", "jaeger")
    with pytest.raises(settings.SettingsError, match="TRACING must be one of"):
        tracing.configure("rasa")
    tracing.shutdown()


# ---------------------------------------------------------------- one turn


def test_a_whatsapp_turn_is_one_trace_with_its_steps(redis, recorder, spans):
    with serve_channel(whatsapp(recorder.url)) as served:
        post_whatsapp(served.server.url, WA_TEXT)
        recorder.wait_for(1)
        (message,) = served.agent.messages
    found = spans()
    (turn,) = by_name(found, "threadline.turn")
    assert turn.parent is None
    trace_id = turn.context.trace_id
    assert message.metadata["trace_id"] == hex_id(trace_id)  # logs, metadata and traces agree
    names = {span.name for span in found if span.context.trace_id == trace_id}
    assert names >= {"threadline.turn", "threadline.verify", "threadline.parse", "threadline.identify",
                     "threadline.rasa", "threadline.send", "threadline.outbound"}
    parents = {span.name: span.parent.span_id for span in found if span.parent is not None}
    ids = {span.name: span.context.span_id for span in found}
    for child in ("threadline.verify", "threadline.parse", "threadline.identify", "threadline.rasa"):
        assert parents[child] == ids["threadline.turn"]
    assert parents["threadline.send"] == ids["threadline.rasa"]
    assert parents["threadline.outbound"] == ids["threadline.send"]
    customer = identity.channel_identity("whatsapp", WA_ID).customer_id
    assert turn.attributes["threadline.channel"] == "whatsapp"
    assert turn.attributes["threadline.customer"] == tracing.pseudonym(customer) != customer
    assert turn.attributes["threadline.outcome"] == "processed"
    (outbound,) = by_name(found, "threadline.outbound")
    assert outbound.attributes["http.response.status_code"] == 200 and outbound.attributes["threadline.attempts"] == 1
    assert_no_personal_data(found, WA_ID, NAME, WA_TEXT, customer, "You said")


def test_a_refused_signature_is_a_webhook_span_of_its_own(redis, recorder, spans):
    with serve_channel(whatsapp(recorder.url)) as served:
        raw, headers = p.signed_whatsapp_request(p.whatsapp_text_payload(WA_ID, WA_TEXT, "wamid.x"), "wrong")
        assert requests.post(served.url + "/webhook", data=raw, headers=headers, timeout=30).status_code == 403
    found = spans()
    (webhook,) = by_name(found, "threadline.webhook")
    assert webhook.attributes["http.response.status_code"] == 403 and not by_name(found, "threadline.turn")
    (verify,) = by_name(found, "threadline.verify")
    assert verify.parent.span_id == webhook.context.span_id


# --------------------------------------------------------- channel switch


def test_whatsapp_then_voice_then_web_are_linked_turn_to_turn(redis, recorder, spans, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    from tests.connectors.test_twilio_voice import Caller

    channels = [whatsapp(recorder.url), TwilioVoiceInput.from_credentials({"auth_token": TWILIO_TOKEN}),
                WebchatInput.from_credentials({})]
    agent = EchoAgent(lambda message: [{"text": f"Noted, {EMAIL}"}])
    with serve_channels(channels, agent) as server:
        post_whatsapp(server.url, WA_TEXT)
        customer = identity.channel_identity("whatsapp", WA_ID).customer_id

        class Voice:
            url = f"{server.url}/webhooks/twilio_voice"

        Caller(Voice, caller=CALLER, token=TWILIO_TOKEN).ring()
        identity.link("webchat", VISITOR, customer, "low")
        reply = requests.post(f"{server.url}/webhooks/webchat/webhook",
                              json={"sender": visitor_token(VISITOR), "message": WEB_TEXT}, timeout=30)
        assert reply.status_code == 200, reply.text
    assert [m.sender_id for m in agent.messages] == [customer] * 3  # one customer on three channels
    turns = {span.attributes["threadline.channel"]: span for span in by_name(spans(), "threadline.turn")}
    wa, voice, web = turns["whatsapp"], turns["twilio_voice"], turns["webchat"]
    assert len({wa.context.trace_id, voice.context.trace_id, web.context.trace_id}) == 3  # a trace per turn
    assert wa.links == ()
    for turn, before, previous in ((voice, wa, "whatsapp"), (web, voice, "twilio_voice")):
        (link,) = turn.links
        assert (link.context.trace_id, link.context.span_id) == (before.context.trace_id, before.context.span_id)
        assert link.attributes["threadline.previous_channel"] == previous
        assert turn.parent is None  # a link, not a parent
    pseudonym = tracing.pseudonym(customer)
    assert {turn.attributes["threadline.customer"] for turn in turns.values()} == {pseudonym}
    stored = json.loads(redis.get(f"{settings.get().key_prefix}:trace:last:{customer}"))
    assert stored == {"channel": "webchat", "trace_id": hex_id(web.context.trace_id),
                      "span_id": hex_id(web.context.span_id, 16)}
    assert 0 < redis.ttl(f"{settings.get().key_prefix}:trace:last:{customer}") <= tracing.LAST_TURN_TTL
    assert_no_personal_data(spans(), WA_ID, CALLER, NAME, EMAIL, WA_TEXT, WEB_TEXT, customer, VISITOR)


def test_the_same_channel_again_is_not_a_switch(redis, recorder, spans):
    with serve_channel(whatsapp(recorder.url)) as served:
        post_whatsapp(served.server.url, WA_TEXT)
        post_whatsapp(served.server.url, WEB_TEXT)
    assert all(turn.links == () for turn in by_name(spans(), "threadline.turn"))


# ------------------------------------------------------ Rasa and actions


@contextlib.contextmanager
def serve_actions(package):
    """The real action server app (Threadline's guard on rasa-sdk's) for ``package``; yields its webhook."""
    from threadline.action_server import create_app

    Sanic.test_mode = True
    server = ServerThread(create_app(package)).start()
    try:
        yield f"{server.url}/webhook"
    finally:
        server.stop()


@pytest.fixture
def action_server(redis):
    """The action server, serving this module's probe action."""
    with serve_actions(__name__) as url:
        yield url


class StubInterpreter:
    """Stands in for the NLU model: every text is a confident ``greet``."""

    async def parse(self, message):
        return {"text": message.text, "intent": {"name": "greet", "confidence": 0.93}, "entities": []}


def test_nlu_policies_and_the_action_server_call_join_the_turns_trace(action_server, spans):
    from rasa.core.policies.policy import PolicyPrediction
    from rasa.core.processor import MessageProcessor

    rasa_patches.install()
    domain = Domain.from_dict({"version": "3.1", "intents": ["greet"], "actions": ["action_tracing_probe"]})
    processor = object.__new__(MessageProcessor)  # the real methods, a stub model
    processor.http_interpreter, processor.domain, processor.max_number_of_predictions = StubInterpreter(), domain, 10
    processor.action_endpoint = EndpointConfig(action_server)
    processor._predict_next_with_tracker = lambda tracker: PolicyPrediction.for_action_name(
        domain, "action_tracing_probe", "RulePolicy")
    tracker = DialogueStateTracker.from_events("customer-123", [])
    output = CollectingOutputChannel()

    async def turn():
        with tracing.span("threadline.turn", root=True):
            await processor.parse_message(UserMessage(WA_TEXT, sender_id="customer-123"), tracker)
            action, prediction = processor.predict_next_with_tracker_if_should(tracker)
            return await action.run(output, None, tracker, domain)

    events = asyncio.run(turn())
    assert [getattr(event, "text", None) for event in events] == ["probed"]  # the action server really ran it
    found = spans()
    (root,) = by_name(found, "threadline.turn")
    (nlu,), (policies,) = by_name(found, "rasa.nlu"), by_name(found, "rasa.policies")
    (call,), (served,) = by_name(found, "rasa.action_server"), by_name(found, "actions.run")
    assert {span.context.trace_id for span in (nlu, policies, call, served)} == {root.context.trace_id}
    assert nlu.attributes["rasa.intent"] == "greet" and nlu.attributes["rasa.confidence"] == pytest.approx(0.93)
    assert policies.attributes["rasa.action"] == "action_tracing_probe"
    assert policies.attributes["rasa.policy"] == "RulePolicy"
    assert call.attributes["rasa.action"] == "action_tracing_probe" and call.parent.span_id == root.context.span_id
    assert served.parent.span_id == call.context.span_id  # continued from the traceparent header
    assert served.attributes["threadline.customer"] == tracing.pseudonym("customer-123")
    assert "traceparent" not in (processor.action_endpoint.headers or {})  # the shared endpoint is untouched
    assert_no_personal_data(found, WA_TEXT, "customer-123")


def test_the_action_server_continues_a_traceparent_it_is_sent(action_server, spans):
    rasa_patches.install()
    from threadline.rasa_patches import ACTION_TOKEN_HEADER

    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    body = {"next_action": "action_tracing_probe", "sender_id": "c-1", "version": "3.6.2",
            "tracker": {"sender_id": "c-1", "slots": {}, "latest_message": {}, "events": [],
                        "latest_input_channel": "webchat"}, "domain": {}}
    headers = {ACTION_TOKEN_HEADER: settings.get().secret("action_server_token"),
               "traceparent": f"00-{trace_id}-{parent}-01"}
    assert requests.post(action_server, json=body, headers=headers, timeout=30).status_code == 200
    (served,) = by_name(spans(), "actions.run")
    assert hex_id(served.context.trace_id) == trace_id and hex_id(served.parent.span_id, 16) == parent
    assert served.attributes["threadline.channel"] == "webchat"


@pytest.mark.skipif(not MODEL.exists(), reason="no trained model (make train)")
def test_a_turn_through_the_trained_agent_has_every_span(redis, recorder, spans, business_db):
    from rasa.core.agent import Agent

    rasa_patches.install()
    with serve_actions("actions") as action_server:
        agent = Agent.load(str(MODEL), action_endpoint=EndpointConfig(action_server))
        with serve_channel(whatsapp(recorder.url), agent) as served:
            post_whatsapp(served.server.url, "hello")
            recorder.wait_for(1)
    found = spans()
    (turn,) = by_name(found, "threadline.turn")
    in_trace = [span for span in found if span.context.trace_id == turn.context.trace_id]
    names = {span.name for span in in_trace}
    assert names >= {"threadline.verify", "threadline.identify", "rasa.nlu", "rasa.policies",
                     "rasa.action_server", "actions.run", "threadline.send", "threadline.outbound"}
    (nlu,) = by_name(in_trace, "rasa.nlu")
    assert nlu.attributes["rasa.intent"] == "greet"
    calls = {span.context.span_id for span in by_name(in_trace, "rasa.action_server")}
    assert all(span.parent.span_id in calls for span in by_name(in_trace, "actions.run"))
    assert_no_personal_data(found, WA_ID, NAME)
