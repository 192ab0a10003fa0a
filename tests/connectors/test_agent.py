"""The agent desk over real HTTP: sign-in, access control, CSRF, the case steps, live events.

The desk runs in a Sanic app built by Rasa's own ``configure_app`` next to a
WhatsApp channel whose API is a ``Recorder``; ``app.ctx.agent`` is a real Rasa
``Agent`` (no model needed) on the Redis event-log tracker store, so pausing,
replies and hand-backs land in real trackers. The business DB is SQLite (or
DATABASE_URL).
"""
import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rasa.core.agent import Agent
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.run import configure_app
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Sanic

from connectors.agent import AgentDeskInput
from connectors.agent.auth import LOGIN_FAILURE_LIMIT, AgentDirectory
from connectors.whatsapp import WhatsAppInput, _window_key
from tests.connectors.harness import ServerThread
from tests.support import payloads as p
from tests.support.desk import DeskClient
from threadline import handoff, identity, settings
from threadline.db import cases
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]

DOMAIN = Domain.load(str(settings.PROJECT_ROOT / "domain.yml"))
TOKENS = "alice:alice-token,bob:bob-token"


class Desk(DeskClient):
    """A running desk and its agent's stores."""

    def __init__(self, server, agent, store, recorder):
        super().__init__(f"{server.url}/webhooks/agent")
        self.server = server
        self.agent = agent
        self.store = store  # the Redis store itself (the agent wraps it)
        self.recorder = recorder

    def sign_in(self, name, token=None):
        return super().sign_in(name, token or f"{name}-token")

    def tracker(self, customer):
        return self.store._retrieve(customer, all_sessions=True)


@pytest.fixture
def desk(redis, recorder, monkeypatch):
    monkeypatch.setenv("AGENT_TOKENS", TOKENS)
    Sanic.test_mode = True
    whatsapp = WhatsAppInput.from_credentials({
        "verify_token": "v", "app_secret": "s", "access_token": "t",
        "phone_number_id": p.BUSINESS_PHONE_NUMBER_ID, "api_base": recorder.url + "/graph",
    })
    channel = AgentDeskInput.from_credentials({"tokens_env": "AGENT_TOKENS"})
    app = configure_app([whatsapp, channel], enable_api=False)
    store = RedisEventLogTrackerStore(DOMAIN, key_prefix=settings.get().key_prefix)
    app.ctx.agent = Agent(domain=DOMAIN, tracker_store=store, lock_store=InMemoryLockStore())
    server = ServerThread(app).start()
    try:
        yield Desk(server, app.ctx.agent, store, recorder)
    finally:
        server.stop()


def whatsapp_customer(desk, wa_id="15551230001", text="I want to talk to a person"):
    """A customer who wrote on WhatsApp, with a conversation and an open case."""
    who = identity.resolve("whatsapp", wa_id, phone=wa_id, verified_phone=True)
    identity.record_channel_use(who.customer_id, "whatsapp")
    identity._redis(None).set(_window_key(who.customer_id), "1", ex=3600)
    context = {"customer": {"name": "Ana", "trust": "verified"}, "channel": "whatsapp", "channels": ["whatsapp"],
               "transcript": [{"from": "customer", "text": text, "channel": "whatsapp"}]}
    case_id = cases.record_handoff(who.customer_id, "customer_request", context)
    tracker = DialogueStateTracker(who.customer_id, DOMAIN.slots)
    tracker.update(ActionExecuted("action_listen"))
    tracker.update(UserUttered(text, {"name": "request_human", "confidence": 0.97},
                               metadata={"channel": "whatsapp", "trust": "verified"}))
    tracker.update(SlotSet("handoff_case", case_id))
    tracker.update(ActionExecuted("action_listen"))
    desk.store.save_sync(tracker)
    handoff.notify(cases.get_case(case_id), "opened")
    return who.customer_id, case_id


def queue_row(html, case_id):
    """The queue's row of one case."""
    return re.search(rf'<tr data-case-id="{case_id}".*?</tr>', html).group(0)


def whatsapp_texts(recorder, wa_id):
    return [r.json["text"]["body"] for r in recorder.requests_to("/graph")
            if r.json.get("to") == wa_id and r.json.get("type") == "text"]


# ---------------------------------------------------------------- sign-in


def test_every_desk_route_refuses_anonymous_requests(desk):
    customer, case_id = whatsapp_customer(desk)
    anonymous = requests.Session()
    for path in ("/", "/queue", "/events", f"/events?case={case_id}", f"/cases/{case_id}",
                 f"/cases/{case_id}/timeline"):
        answer = anonymous.get(desk.base + path, timeout=5)
        assert answer.status_code == 401, path
        assert customer not in answer.text and "I want to talk" not in answer.text
    for step in ("accept", "reply", "handback", "close"):
        answer = anonymous.post(f"{desk.base}/cases/{case_id}/{step}", data={"text": "hi", "resolution": "x"})
        assert answer.status_code == 401, step
    assert anonymous.post(f"{desk.base}/logout").status_code == 401
    assert cases.get_case(case_id).status == "queued"
    page = anonymous.get(desk.base + "/")
    assert 'action="/webhooks/agent/login"' in page.text  # the 401 page is the sign-in form


def test_sign_in_sets_a_hardened_session_cookie_and_wrong_tokens_fail(desk):
    browser = requests.Session()
    form = browser.get(f"{desk.base}/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    wrong = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "bob-token", "csrf": csrf})
    assert wrong.status_code == 401 and "Unknown agent or wrong token" in wrong.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)
    unknown = browser.post(f"{desk.base}/login", data={"agent": "mallory", "token": "x", "csrf": csrf})
    assert unknown.status_code == 401
    csrf = re.search(r'name="csrf" value="([^"]+)"', unknown.text).group(1)
    ok = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "alice-token", "csrf": csrf},
                      allow_redirects=False)
    assert ok.status_code == 303
    cookie = [h for h in ok.raw.headers.getlist("Set-Cookie") if h.startswith("threadline_agent=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/webhooks/agent/" in cookie
    assert browser.get(f"{desk.base}/").status_code == 200


def test_sign_in_needs_the_form_token_and_tampered_cookies_are_refused(desk):
    browser = requests.Session()
    browser.get(f"{desk.base}/login")
    forged = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "alice-token", "csrf": "x"})
    assert forged.status_code == 403
    alice = desk.sign_in("alice")
    value = alice.cookies.get("threadline_agent")
    tampered = requests.Session()
    tampered.cookies.set("threadline_agent", value[:-4] + "0000", path="/webhooks/agent/")
    assert tampered.get(f"{desk.base}/").status_code == 401


def test_posts_without_the_session_csrf_token_are_refused(desk):
    _, case_id = whatsapp_customer(desk)
    alice = desk.sign_in("alice")
    missing = alice.post(f"{desk.base}/cases/{case_id}/accept", headers={"Accept": "application/json"})
    assert missing.status_code == 403 and "CSRF" in missing.json()["error"]
    wrong = alice.post(f"{desk.base}/cases/{case_id}/accept", data={"csrf": "nope"})
    assert wrong.status_code == 403
    assert cases.get_case(case_id).status == "queued"


def test_repeated_failed_sign_ins_are_throttled(desk):
    browser = requests.Session()
    page = browser.get(f"{desk.base}/login")
    for _ in range(LOGIN_FAILURE_LIMIT):
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        page = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "guess", "csrf": csrf})
        assert page.status_code == 401
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    page = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "alice-token", "csrf": csrf})
    assert page.status_code == 429 and "Too many sign-in attempts" in page.text and page.headers["Retry-After"]


def _failed_sign_ins(desk, count, **headers):
    browser = requests.Session()
    page = browser.get(f"{desk.base}/login", headers=headers)
    for _ in range(count):
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        page = browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "guess", "csrf": csrf},
                            headers=headers)
    return browser, page


def _sign_in_from(desk, **headers):
    browser = requests.Session()
    page = browser.get(f"{desk.base}/login", headers=headers)
    for cookie in browser.cookies:
        cookie.secure = False  # the browser's leg to the proxy is https; this test's leg is not
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return browser.post(f"{desk.base}/login", data={"agent": "alice", "token": "alice-token", "csrf": csrf},
                        headers=headers, allow_redirects=False)


def test_behind_a_trusted_proxy_one_address_failing_does_not_lock_out_the_others(desk, monkeypatch):
    monkeypatch.setenv("THREADLINE_TRUSTED_PROXIES", "127.0.0.1")
    _, last = _failed_sign_ins(desk, LOGIN_FAILURE_LIMIT + 1, **{"X-Forwarded-For": "203.0.113.66"})
    assert last.status_code == 429
    assert _sign_in_from(desk, **{"X-Forwarded-For": "198.51.100.20"}).status_code == 303  # another agent's office


def test_without_a_trusted_proxy_a_forged_forwarded_address_does_not_escape_the_lockout(desk):
    _failed_sign_ins(desk, LOGIN_FAILURE_LIMIT + 1)
    assert _sign_in_from(desk, **{"X-Forwarded-For": "198.51.100.21"}).status_code == 429


def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_https(desk, monkeypatch):
    plain = _sign_in_from(desk, **{"X-Forwarded-Proto": "https"})  # nobody trusted: the connection is http
    cookie = [h for h in plain.raw.headers.getlist("Set-Cookie") if h.startswith("threadline_agent=")][0]
    assert "Secure" not in cookie
    monkeypatch.setenv("THREADLINE_TRUSTED_PROXIES", "127.0.0.1")
    behind_tls = _sign_in_from(desk, **{"X-Forwarded-Proto": "https"})
    cookie = [h for h in behind_tls.raw.headers.getlist("Set-Cookie") if h.startswith("threadline_agent=")][0]
    assert "Secure" in cookie


def test_a_malformed_case_number_is_a_clear_400_never_a_500(desk):
    anonymous = requests.get(f"{desk.base}/events", params={"case": "²"}, timeout=5)
    assert anonymous.status_code in (400, 401)
    alice = desk.sign_in("alice")
    for value in ("²", "1e9999", "-1", "12abc", "9" * 40):
        answer = alice.get(f"{desk.base}/events", params={"case": value}, timeout=5, stream=True)
        assert answer.status_code in (400, 404), (value, answer.status_code)
        if answer.status_code == 400:
            assert "case must be a case number" in answer.text
        answer.close()
    assert alice.get(f"{desk.base}/cases/%C2%B2", timeout=5).status_code in (400, 404)


def test_sign_out_ends_the_session_everywhere(desk):
    alice = desk.sign_in("alice")
    cookie = alice.cookies.get("threadline_agent")
    assert alice.post(f"{desk.base}/logout", data={"csrf": alice.csrf}, allow_redirects=False).status_code == 303
    replay = requests.Session()
    replay.cookies.set("threadline_agent", cookie, path="/webhooks/agent/")
    assert replay.get(f"{desk.base}/").status_code == 401


def test_without_agent_tokens_the_desk_refuses_every_sign_in(monkeypatch):
    monkeypatch.delenv("AGENT_TOKENS", raising=False)
    channel = AgentDeskInput.from_credentials({"tokens_env": "AGENT_TOKENS"})
    assert not channel.directory.enabled
    Sanic.test_mode = True
    app = configure_app([channel], enable_api=False)
    app.ctx.agent = Agent(domain=DOMAIN, lock_store=InMemoryLockStore())
    server = ServerThread(app).start()
    try:
        base = f"{server.url}/webhooks/agent"
        assert requests.get(f"{base}/health").json()["sign_in"] is False
        page = requests.get(f"{base}/login")
        assert "Sign-in is disabled" in page.text and "AGENT_TOKENS" in page.text
        attempt = requests.post(f"{base}/login", data={"agent": "alice", "token": "alice-token"})
        assert attempt.status_code == 403 and "Sign-in is disabled" in attempt.text
    finally:
        server.stop()


def test_tokens_are_kept_hashed():
    directory = AgentDirectory("alice:s3cret-token")
    assert directory.verify("alice", "s3cret-token")
    assert not directory.verify("alice", "s3cret-tokeN") and not directory.verify("bob", "s3cret-token")
    assert "s3cret-token" not in repr(vars(directory))
    with pytest.raises(ValueError, match="AGENT_TOKENS"):
        AgentDirectory("alice")


# ---------------------------------------------------------------- access


def test_another_agents_case_is_forbidden_on_every_route(desk):
    _, case_id = whatsapp_customer(desk)
    alice, bob = desk.sign_in("alice"), desk.sign_in("bob")
    assert desk.post(alice, case_id, "accept").status_code == 200
    for path in (f"/cases/{case_id}", f"/cases/{case_id}/timeline", f"/events?case={case_id}"):
        answer = bob.get(desk.base + path, timeout=5)
        assert answer.status_code == 403, path
        assert "belongs to alice" in answer.text
    for step in ("reply", "handback", "close"):
        answer = desk.post(bob, case_id, step, text="hi", resolution="x")
        assert answer.status_code == 403, step
        assert answer.json()["error"] == f"Case #{case_id} belongs to alice."
    late = desk.post(bob, case_id, "accept")  # a lost race, not a trespass
    assert late.status_code == 409 and late.json()["error"] == f"Case #{case_id} was already accepted by alice."
    assert cases.get_case(case_id).agent == "alice"
    row = queue_row(bob.get(f"{desk.base}/queue").text, case_id)
    assert "I want to talk" not in row and "with alice" in row and "/cases/" not in row


def test_two_agents_accepting_the_same_case_one_wins(desk):
    customer, case_id = whatsapp_customer(desk)
    alice, bob = desk.sign_in("alice"), desk.sign_in("bob")
    start = threading.Barrier(2)

    def accept(browser):
        start.wait()
        return desk.post(browser, case_id, "accept")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(accept, [alice, bob]))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    winner = cases.get_case(case_id).agent
    loser = [a for a in answers if a.status_code == 409][0].json()["error"]
    assert loser == f"Case #{case_id} was already accepted by {winner}."
    paused = [e for e in desk.tracker(customer).events if isinstance(e, ConversationPaused)]
    assert len(paused) == 1


def test_many_concurrent_accepts_in_the_database_have_exactly_one_winner():
    case_id = cases.record_handoff("c_race", "customer_request", {})
    agents = [f"agent{i}" for i in range(8)]
    start = threading.Barrier(len(agents))

    def accept(agent):
        start.wait()
        try:
            return cases.accept_case(case_id, agent).agent
        except cases.CaseConflict:
            return None

    with ThreadPoolExecutor(len(agents)) as pool:
        winners = [w for w in pool.map(accept, agents) if w]
    assert len(winners) == 1 and cases.get_case(case_id).agent == winners[0]


# ---------------------------------------------------------------- case steps


def test_accept_reply_hand_back_through_the_customers_channel(desk):
    customer, case_id = whatsapp_customer(desk, wa_id="15551230002")
    alice = desk.sign_in("alice")
    page = alice.get(f"{desk.base}/cases/{case_id}")
    assert page.status_code == 200 and "I want to talk to a person" in page.text and "Ana" in page.text

    assert desk.post(alice, case_id, "accept").json()["case"]["status"] == "accepted"
    desk.recorder.wait_for(lambda rs: "alice from our team has joined the conversation."
                           in whatsapp_texts(desk.recorder, "15551230002"))
    answer = desk.post(alice, case_id, "reply", text="Hi, I'm Alice. Let me look at that.")
    assert answer.status_code == 200 and answer.json()["ok"]
    desk.recorder.wait_for(lambda rs: "Hi, I'm Alice. Let me look at that." in whatsapp_texts(desk.recorder, "15551230002"))
    tracker = desk.tracker(customer)
    assert tracker.is_paused()
    sent = [e for e in tracker.events if isinstance(e, BotUttered) and e.metadata.get("agent") == "alice"]
    assert [e.text for e in sent][-1] == "Hi, I'm Alice. Let me look at that."

    assert desk.post(alice, case_id, "handback").json()["case"]["outcome"] == "handed_back"
    tracker = desk.tracker(customer)
    assert not tracker.is_paused() and tracker.get_slot("handoff_case") is None
    assert isinstance([e for e in tracker.events if not isinstance(e, BotUttered)][-2], ConversationResumed)
    assert any("back with Threadline's assistant" in t for t in whatsapp_texts(desk.recorder, "15551230002"))


def test_a_reply_to_a_closed_case_is_refused_with_a_clear_message(desk):
    _, case_id = whatsapp_customer(desk, wa_id="15551230003")
    alice = desk.sign_in("alice")
    desk.post(alice, case_id, "accept")
    assert desk.post(alice, case_id, "close", resolution="").status_code == 400
    closed = desk.post(alice, case_id, "close", resolution="Refund issued")
    assert closed.status_code == 200 and cases.get_case(case_id).resolution == "Refund issued"
    before = len(desk.recorder.requests)
    answer = desk.post(alice, case_id, "reply", text="One more thing")
    assert answer.status_code == 409
    assert answer.json()["error"] == f"Case #{case_id} is closed (resolved by alice). Your reply was not sent."
    page = desk.post(alice, case_id, "reply", json_reply=False, text="One more thing")
    assert page.status_code == 409 and "Your reply was not sent." in page.text
    assert len(desk.recorder.requests) == before


def test_a_reply_before_accepting_or_to_an_unreachable_channel_is_refused(desk):
    customer, case_id = whatsapp_customer(desk, wa_id="15551230004")
    alice = desk.sign_in("alice")
    assert desk.post(alice, case_id, "reply", text="hi").json()["error"].endswith(
        "accept it first. Your reply was not sent.")
    desk.post(alice, case_id, "accept")
    # The customer's latest channel cannot be sent to: the most recent one that can is used.
    identity.record_channel_use(customer, "rest")
    answer = desk.post(alice, case_id, "reply", text="hi")
    assert answer.status_code == 200 and answer.json()["message"] == "Sent on WhatsApp."
    # A customer with no channel the desk can reach: refused, saying why, and the timeline shows it.
    stranded = identity.resolve("rest", "nowhere-1").customer_id
    identity.record_channel_use(stranded, "rest")
    other = cases.record_handoff(stranded, "customer_request", {"channel": "rest"})
    desk.post(alice, other, "accept")
    answer = desk.post(alice, other, "reply", text="hello?")
    assert answer.status_code == 409
    assert answer.json()["error"] == "Not sent: the customer has no channel the desk can send to (tried rest)."
    timeline = alice.get(f"{desk.base}/cases/{other}/timeline").text
    assert "hello?" in timeline and 'class="delivery failed"' in timeline


def test_customer_text_is_escaped_on_the_desk(desk):
    _, case_id = whatsapp_customer(desk, wa_id="15551230005", text="<script>alert(1)</script>")
    alice = desk.sign_in("alice")
    for path in (f"/cases/{case_id}", "/", "/queue"):
        text = alice.get(desk.base + path).text
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    page = alice.get(f"{desk.base}/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


# ---------------------------------------------------------------- live


def test_new_cases_and_customer_messages_stream_to_the_desk(desk):
    alice = desk.sign_in("alice")
    with desk.stream(alice) as stream:
        customer, case_id = whatsapp_customer(desk, wa_id="15551230006")
        data, _ = stream.next("case", where=lambda d: d["case"]["id"] == case_id)  # pushed, not polled for
        assert data["change"] == "opened"
        tracker = desk.store._retrieve(customer, all_sessions=False)
        tracker.update(UserUttered("are you there?", {"name": "greet", "confidence": 0.9},
                                   metadata={"channel": "whatsapp"}))
        asyncio.run(desk.store.save(tracker))
        data, _ = stream.next("message", where=lambda d: d["case"] == case_id)
        assert data["event"]["text"] == "are you there?" and data["event"]["channel"] == "whatsapp"


def _message_channel_listeners() -> int:
    return dict(identity._redis(None).pubsub_numsub(handoff.desk_events_channel()))[
        handoff.desk_events_channel().encode()]


def _eventually(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_the_desk_follows_conversation_messages_only_while_a_page_is_open(desk):
    customer, case_id = whatsapp_customer(desk, wa_id="15551230009")
    alice = desk.sign_in("alice")
    with desk.stream(alice) as stream:  # returns after "hello": the hub follows the messages by then
        assert _message_channel_listeners() == 1
        tracker = desk.store._retrieve(customer, all_sessions=False)
        tracker.update(UserUttered("still there?", {"name": "greet", "confidence": 0.9},
                                   metadata={"channel": "whatsapp"}))
        asyncio.run(desk.store.save(tracker))
        data, _ = stream.next("message", where=lambda d: d["case"] == case_id)
        assert data["event"]["text"] == "still there?"
    # The page closed: no replica decodes every conversation's messages for nobody.
    _eventually(lambda: _message_channel_listeners() == 0)
    # Case changes are still followed, to keep the open-case index current.
    handoff.notify(cases.get_case(case_id), "accepted")
    assert dict(identity._redis(None).pubsub_numsub(handoff.desk_channel()))[handoff.desk_channel().encode()] >= 1


def test_a_case_stream_only_carries_that_case(desk):
    _, first = whatsapp_customer(desk, wa_id="15551230007")
    alice = desk.sign_in("alice")
    with desk.stream(alice, first) as stream:
        _, second = whatsapp_customer(desk, wa_id="15551230008")
        desk.post(alice, first, "accept")
        data, _ = stream.next("case")
        assert data["case"]["id"] == first and data["change"] == "accepted"
        assert second not in [d["case"]["id"] for k, d, _ in list(stream.events.queue) if k == "case"]


# ---------------------------------------------------------------- journeys


def test_journeys_from_the_desk_start_list_and_cancel_for_signed_in_agents_only(desk):
    from tests.support.desk import DeskClient

    customer, _ = whatsapp_customer(desk, wa_id="14155550188")
    anonymous = requests.Session()
    assert anonymous.get(f"{desk.base}/journeys", timeout=5).status_code == 401
    assert anonymous.post(f"{desk.base}/journeys", json={"journey": "service_reminder"}, timeout=5).status_code == 401
    alice = DeskClient(desk.base).sign_in("alice", "alice-token")
    headers = {"X-CSRF-Token": alice.csrf, "Accept": "application/json"}
    start = {"journey": "service_reminder", "customer": customer, "context": {"vehicle": "Golf"}}
    assert alice.post(f"{desk.base}/journeys", json=start, timeout=5).status_code == 403  # no CSRF token
    refused = alice.post(f"{desk.base}/journeys", json={**start, "context": {}}, headers=headers, timeout=5)
    assert refused.status_code == 400 and "needs vehicle" in refused.json()["error"]
    unknown = alice.post(f"{desk.base}/journeys", json={**start, "journey": "nope"}, headers=headers, timeout=5)
    assert unknown.status_code == 400 and "there is no journey 'nope'" in unknown.json()["error"]
    nobody = alice.post(f"{desk.base}/journeys", json={"journey": "service_reminder", "phone": "+15550009999",
                                                       "context": {"vehicle": "Golf"}}, headers=headers, timeout=5)
    assert nobody.status_code == 404 and "no customer has the phone number" in nobody.json()["error"]
    assert alice.post(f"{desk.base}/journeys", data=b"{not json", headers=headers, timeout=5).status_code == 400
    by_phone = alice.post(f"{desk.base}/journeys", json={**start, "customer": None, "phone": "+14155550188"},
                          headers=headers, timeout=5)
    assert by_phone.status_code == 201, by_phone.text
    instance = by_phone.json()["instance"]

    listed = alice.get(f"{desk.base}/journeys", params={"customer": customer}, timeout=5).json()
    assert "service_reminder" in [j["name"] for j in listed["journeys"]]
    (mine,) = listed["instances"]
    assert mine["id"] == instance and mine["status"] == "active" and mine["started_by"] == "desk/alice"
    assert mine["steps"][0]["name"] == "reminder" and mine["context"] == {"vehicle": "Golf"}
    assert alice.get(f"{desk.base}/journeys", params={"status": "weird"}, timeout=5).status_code == 400

    assert alice.post(f"{desk.base}/journeys/{instance}/cancel", headers=headers, timeout=5).json()["cancelled"]
    again = alice.post(f"{desk.base}/journeys/{instance}/cancel", headers=headers, timeout=5)
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    assert alice.post(f"{desk.base}/journeys/999999999/cancel", headers=headers, timeout=5).status_code == 404
    (ended,) = alice.get(f"{desk.base}/journeys", params={"customer": customer}, timeout=5).json()["instances"]
    assert ended["status"] == "cancelled" and ended["ended_reason"] == "cancelled by desk/alice"


def test_the_timeline_shows_a_journeys_message_on_the_channel_it_went_to():
    from rasa.shared.core.events import BotUttered

    from connectors.agent import views

    sent = BotUttered("Your Golf is due for its yearly service.", metadata={
        "journey": "service_reminder", "journey_step": "reminder", "delivery": "sent", "delivery_channel": "whatsapp"})
    html = views.timeline_items([sent])
    assert "Journey service_reminder (reminder)" in html and 'data-channel="whatsapp"' in html
    assert "from-journey" in html and "Sent on whatsapp." in html


def test_the_dashboard_is_for_signed_in_agents_and_says_what_is_wrong_with_a_filter(desk):
    from tests.support.desk import DeskClient

    anonymous = requests.Session()
    for path in ("/dashboard", "/dashboard/data", "/dashboard.csv"):
        assert anonymous.get(desk.base + path, timeout=5).status_code == 401, path
    alice = DeskClient(desk.base).sign_in("alice", "alice-token")
    json_reply = {"Accept": "application/json"}
    bad = alice.get(f"{desk.base}/dashboard/data", params={"start": "2026-02-30"}, headers=json_reply, timeout=5)
    assert bad.status_code == 400 and "dates must look like" in bad.json()["error"]
    wrong_way = alice.get(f"{desk.base}/dashboard.csv", params={"start": "2026-12-04", "end": "2026-12-01"},
                          headers=json_reply, timeout=5)
    assert wrong_way.status_code == 400 and "after the end date" in wrong_way.json()["error"]
    channel = alice.get(f"{desk.base}/dashboard/data", params={"channel": "fax"}, headers=json_reply, timeout=5)
    assert channel.status_code == 400 and "unknown channel 'fax'" in channel.json()["error"]
    page = alice.get(f"{desk.base}/dashboard", timeout=5)
    assert page.status_code == 200 and 'id="totals"' in page.text and "vendor/chart.umd.js" in page.text
    assert "Containment" in page.text and "Definitions" in page.text
    assert alice.get(f"{desk.base}/static/vendor/chart.umd.js", timeout=5).status_code == 200
