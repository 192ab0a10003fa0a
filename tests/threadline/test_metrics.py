"""Prometheus metrics: the guarded route, a real turn through a real connector, and several processes adding up.

The route and the WhatsApp connector are served together by Rasa's own
``configure_app`` (as ``rasa run`` does); the bot stands in for Rasa's
processor and saves its turn through the real tracker store, so confidence
and fallback are read the way the server reads them. No duration is asserted:
only that a sample exists.
"""
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from rasa.core.run import configure_app
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, UserUttered
from sanic import Sanic

from connectors.metrics import MetricsInput
from connectors.whatsapp import WhatsAppInput
from tests.connectors.harness import EchoAgent, ServerThread
from tests.support import payloads as p
from tests.support.recorder import Recorder
from threadline import handoff, identity, metrics, redis_client
from threadline.tracker_store import RedisEventLogTrackerStore

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests"
SECRET = "app-secret-for-tests"
WA_ID = "16505557788"
TEXT = "my card number is due and I am cross"


# ---------------------------------------------------------------- helpers


def samples(text, name):
    """{(sample name, labels as a sorted tuple): value} of one metric family."""
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text, sample_name, **labels):
    """One sample's value (0 when absent)."""
    family = sample_name
    for suffix in ("_total", "_count", "_sum", "_bucket"):
        if family.endswith(suffix):
            family = family[: -len(suffix)]
            break
    return samples(text, family).get((sample_name, tuple(sorted(labels.items()))), 0.0)


def label_values(text):
    """Every label value anywhere in the exposition."""
    return {v for family in text_string_to_metric_families(text) for s in family.samples for v in s.labels.values()}


class TurnAgent(EchoAgent):
    """Rasa's processor, briefly: the turn is saved through the real tracker store, then answered."""

    def __init__(self, store, intent, actions):
        super().__init__()
        self.tracker_store = store
        self.intent = intent
        self.actions = actions

    async def handle_message(self, message):
        self.messages.append(message)
        tracker = await self.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, intent=self.intent, input_channel=message.input_channel,
                                   message_id=message.message_id, metadata=message.metadata))
        for name in self.actions:
            tracker.update(ActionExecuted(name))
        await message.output_channel.send_response(message.sender_id, {"text": "Sorry, could you rephrase?"})
        await self.tracker_store.save(tracker)


@pytest.fixture
def prefix(monkeypatch):
    """A unique key prefix; the test's keys are deleted afterwards."""
    name = "tltest" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", name)
    yield name
    client = redis_client.get_client()
    keys = list(client.scan_iter(match=name + ":*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def server(prefix, monkeypatch):
    """WhatsApp and the metrics route on one Rasa app, the bot falling back; the platform is a recorder."""
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    monkeypatch.setenv("OUTBOUND_RETRY_BASE_DELAY", "0.01")
    with Recorder() as api:
        whatsapp = WhatsAppInput.from_credentials({
            "verify_token": "verify-me", "app_secret": SECRET, "access_token": "EAAG-test",
            "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": api.url,
        })
        store = RedisEventLogTrackerStore(Domain.empty(), redis=redis_client.get_client(), key_prefix=prefix)
        agent = TurnAgent(store, {"name": "nlu_fallback", "confidence": 0.21}, ["action_default_fallback"])
        Sanic.test_mode = True
        app = configure_app([whatsapp, MetricsInput.from_credentials(None)], enable_api=False)
        app.ctx.agent = agent
        running = ServerThread(app).start()
        running.api = api
        running.agent = agent
        try:
            yield running
        finally:
            running.stop()


def scrape(server, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(server.url + "/webhooks/metrics/", headers=headers, timeout=30)


def post_text(server, text, message_id):
    raw, headers = p.signed_whatsapp_request(p.whatsapp_text_payload(WA_ID, text, message_id, name="Ada Lovelace"),
                                             SECRET)
    return requests.post(server.url + "/webhooks/whatsapp/webhook", data=raw, headers=headers, timeout=30)


# ------------------------------------------------------------------ the route


@pytest.mark.services
def test_the_route_fails_closed_without_a_token_configured(server, monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN")
    refused = scrape(server)
    assert refused.status_code == 503
    assert "METRICS_TOKEN" in refused.json()["error"]
    assert "threadline_" not in refused.text


@pytest.mark.services
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN}x"},
])
def test_a_missing_or_wrong_token_is_a_401(server, headers):
    refused = requests.get(server.url + "/webhooks/metrics/", headers=headers, timeout=30)
    assert refused.status_code == 401
    assert "Bearer" in refused.json()["error"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "threadline_" not in refused.text


@pytest.mark.services
def test_a_turn_is_measured_by_channel_and_no_label_names_the_customer(server):
    before = scrape(server)
    assert before.status_code == 200
    assert before.headers["Content-Type"].startswith("text/plain; version=0.0.4")

    assert post_text(server, TEXT, "wamid.metrics." + uuid.uuid4().hex).status_code == 200
    server.api.wait_for(1)
    (message,) = server.agent.messages
    after = scrape(server).text

    channel = {"channel": "whatsapp"}
    grew = lambda name, **labels: value(after, name, **labels) - value(before.text, name, **labels)  # noqa: E731
    assert grew("threadline_turn_latency_seconds_count", **channel) == 1
    assert grew("threadline_turn_latency_seconds_bucket", le="+Inf", **channel) == 1
    assert grew("threadline_nlu_confidence_count", **channel) == 1
    assert grew("threadline_nlu_confidence_bucket", le="0.3", **channel) == 1
    assert grew("threadline_nlu_confidence_bucket", le="0.2", **channel) == 0
    assert grew("threadline_fallbacks_total", **channel) == 1

    customer = identity.resolve("whatsapp", WA_ID).customer_id
    assert message.sender_id == customer
    labels = label_values(after)
    assert labels  # the check below reads real label values
    for personal in (customer, WA_ID, "+" + WA_ID, TEXT, "Ada Lovelace", message.message_id):
        assert not [label for label in labels if personal in label], personal
    assert customer not in after and WA_ID not in after and TEXT not in after


@pytest.mark.services
def test_an_undelivered_reply_counts_as_an_outbound_failure(server):
    server.api.respond("/", status=400, json={"error": {"message": "bad recipient", "code": 131030}})
    before = scrape(server).text
    post_text(server, "hello there", "wamid.metrics." + uuid.uuid4().hex)
    server.api.wait_for(1)
    after = scrape(server).text
    grew = value(after, "threadline_outbound_failures_total", channel="whatsapp", kind="failed") - value(
        before, "threadline_outbound_failures_total", channel="whatsapp", kind="failed")
    assert grew == 1


def test_a_handoff_is_counted_by_channel_and_reason_only(business_db):
    reasons = handoff.REASONS
    before = metrics.exposition().decode()
    customer = "c_" + uuid.uuid4().hex[:16]
    opened = handoff.open_case(customer, "frustration", {"channel": "telegram", "customer_id": customer}, "general")
    assert opened.created
    again = handoff.open_case(customer, "frustration", {"channel": "telegram"}, "general")
    assert not again.created  # the open case is not counted twice
    handoff.open_case("c_" + uuid.uuid4().hex[:16], "a reason nobody wrote", {"channel": "+15550001111"}, "general")
    after = metrics.exposition().decode()

    def grew(**labels):
        return (value(after, "threadline_handoffs_total", **labels)
                - value(before, "threadline_handoffs_total", **labels))

    assert "frustration" in reasons
    assert grew(channel="telegram", reason="frustration") == 1
    assert grew(channel="other", reason="other") == 1
    assert customer not in after and "15550001111" not in after


def test_label_values_come_from_bounded_sets():
    for channel in ("whatsapp", "telegram", "webchat", "twilio_voice", "jambonz"):
        assert metrics.channel_label(channel) == channel
    for wild in ("+15551234567", "c_0a1b2c3d4e5f60718293", "16505551234", "Hello there", "", None, "WhatsApp"):
        assert metrics.channel_label(wild) == "other"
    # A channel of another project is known once it runs here (its name is code, not data)...
    assert metrics.channel_label("acme_chat") == "other"
    assert metrics.channel_label("acme_chat", running=True) == "acme_chat"
    # ...and a running channel's name must still look like a name.
    assert metrics.channel_label("+15551234567", running=True) == "other"
    assert metrics.bounded("c_4f9a", metrics.JOURNEY_OUTCOMES) == "other"
    assert metrics.bounded("sent", metrics.JOURNEY_OUTCOMES) == "sent"


# ---------------------------------------------------------- several processes

CHILD = textwrap.dedent("""
    import sys
    from threadline import metrics
    for _ in range(int(sys.argv[1])):
        metrics.count_journey_send("whatsapp", "sent")
    metrics.set_queue_depth({"waiting": int(sys.argv[2]), "due": 1, "claimed": 0})
    print(metrics.DIRECTORY)
""")


def _child(directory, count, waiting):
    env = {**os.environ, "METRICS_DIR": str(directory), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(count), str(waiting)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_the_same_counter_are_added_up(tmp_path):
    children = [_child(tmp_path, 3, 7), _child(tmp_path, 4, 5)]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.strip() == str(tmp_path.resolve())
    text = metrics.exposition(tmp_path).decode()
    assert value(text, "threadline_journey_sends_total", channel="whatsapp", outcome="sent") == 7
    # The queue gauge is "livemax": both counted the same table, the larger (fresher) figure is shown...
    assert value(text, "threadline_journey_queue_depth", state="waiting") == 7
    # ...and a process that stopped takes its figure with it, while its counts stay.
    metrics.mark_dead(children[0].pid, tmp_path)
    text = metrics.exposition(tmp_path).decode()
    assert value(text, "threadline_journey_queue_depth", state="waiting") == 5
    assert value(text, "threadline_journey_sends_total", channel="whatsapp", outcome="sent") == 7


def test_a_stack_start_clears_the_files_of_dead_processes_only(tmp_path):
    child = _child(tmp_path, 2, 1)
    child.communicate(timeout=120)
    mine = tmp_path / f"counter_{os.getpid()}.db"
    mine.write_bytes(b"")  # a live process's file (this one)
    dead = sorted(path.name for path in tmp_path.glob(f"*_{child.pid}.db"))
    assert dead
    assert metrics.clear_dead(tmp_path) == dead
    assert [path.name for path in tmp_path.glob("*.db")] == [mine.name]


def test_the_stack_gives_every_child_the_same_metrics_directory(tmp_path):
    from threadline.stack import Stack

    stack = Stack(rasa_port=1, action_port=2, env={"THREADLINE_VAR_DIR": str(tmp_path), "METRICS_DIR": ""})
    stack._prepare_metrics()
    expected = str((tmp_path / "metrics").resolve())
    assert stack.env["METRICS_DIR"] == expected == stack.env["PROMETHEUS_MULTIPROC_DIR"]
    assert str(stack.settings.metrics_dir) == expected  # what each child computes from the same environment


def test_a_measured_turn_keeps_only_its_own_events_not_the_tracker():
    import gc
    import weakref

    from rasa.shared.core.events import BotUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker = DialogueStateTracker.from_events("c_1", [
        UserUttered("earlier", message_id="m-1"), BotUttered("hello"), ActionExecuted("action_listen"),
        UserUttered("now", {"name": "greet", "confidence": 0.9}, message_id="m-2"), BotUttered("hi again"),
    ])
    with metrics.capturing_turn() as capture:
        metrics.note_saved(tracker)
    gone = weakref.ref(tracker)
    del tracker
    gc.collect()
    assert gone() is None  # freed where Rasa's turn ends, not held for the metrics
    assert [type(e).__name__ for e in capture.events] == ["UserUttered", "BotUttered"]
    assert capture.events[0].message_id == "m-2"
    assert metrics.latest_turn(DialogueStateTracker.from_events("c_2", [BotUttered("only the bot")])) is None
