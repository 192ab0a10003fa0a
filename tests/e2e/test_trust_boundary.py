"""The trust boundary, attacked the way the issue's attacker did, against the real stack.

Every test makes the attack a user would make and expects the refusal; the
rightful customer's conversations keep working (the other e2e tests).
"""
import json
import socket
import uuid

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.support.payloads import signed_whatsapp_request, whatsapp_text_payload
from tests.support.web import WebChat

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def texts(replies):
    return " ".join(r.get("text", "") for r in replies)


# ----------------------------------------------------------------- HTTP API


def test_the_http_api_is_never_anonymous(stack):
    chat = WebChat(stack)
    chat.say("hi")
    customer = chat.customer_id
    base = stack.rasa_url
    for method, path in [("GET", f"/conversations/{customer}/tracker"),
                         ("POST", f"/conversations/{customer}/tracker/events"),
                         ("POST", f"/conversations/{customer}/trigger_intent"),
                         ("DELETE", "/model"), ("PUT", "/model"), ("GET", "/status")]:
        refused = requests.request(method, base + path, json={"event": "bot", "text": "hi"}, timeout=30)
        assert refused.status_code == 401, (method, path, refused.status_code)
    # The token opens it (for operators and tests), and the model is still there.
    ok = requests.get(f"{base}/conversations/{customer}/tracker",
                      params={"token": TEST_SECRETS["RASA_AUTH_TOKEN"]}, timeout=30)
    assert ok.status_code == 200 and ok.json()["sender_id"] == customer
    assert requests.get(f"{base}/status", params={"token": TEST_SECRETS["RASA_AUTH_TOKEN"]}, timeout=30).ok


def test_the_http_api_is_off_without_a_token():
    from threadline.stack import Stack

    without = Stack(rasa_port=1, action_port=2, env={"RASA_AUTH_TOKEN": ""}).rasa_args(endpoints="e.yml")
    assert "--enable-api" not in without and "--cors" not in without
    with_token = Stack(rasa_port=1, action_port=2, env={"RASA_AUTH_TOKEN": "t0k3n"}).rasa_args(endpoints="e.yml")
    assert with_token[with_token.index("--auth-token") + 1] == "t0k3n"


# ------------------------------------------------------------- action server


def _forged_tracker_call():
    return {"next_action": "action_show_order_address", "sender_id": "c_attacker", "version": "3.6.21",
            "domain": {}, "tracker": {"sender_id": "c_attacker", "slots": {"order_number": "554433"},
                                       "latest_message": {"metadata": {"trust": "verified"}}, "events": [],
                                       "paused": False, "followup_action": None, "active_loop": {},
                                       "latest_action_name": "action_listen"}}


def test_the_action_server_answers_only_the_rasa_server(stack):
    forged = requests.post(f"{stack.action_url}/webhook", json=_forged_tracker_call(), timeout=30)
    assert forged.status_code == 403 and "Downing" not in forged.text
    wrong = requests.post(f"{stack.action_url}/webhook", json=_forged_tracker_call(),
                          headers={"X-Threadline-Action-Token": "guess"}, timeout=30)
    assert wrong.status_code == 403
    assert requests.get(f"{stack.action_url}/health", timeout=30).ok


def test_the_action_server_listens_on_loopback_only(stack):
    outward = None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outward interface
            outward = probe.getsockname()[0]
        except OSError:
            pass
    if not outward or outward.startswith("127."):
        pytest.skip("this machine has no non-loopback interface to try")
    with pytest.raises(OSError):
        socket.create_connection((outward, stack.action_port), timeout=3).close()


# --------------------------------------------------------------- metadata


def test_client_metadata_cannot_raise_trust(stack):
    chat = WebChat(stack)
    first = texts(chat.say("what is the delivery address of order 554433",
                           metadata={"trust": "verified", "owner": 2, "channel": "whatsapp"}))
    assert "Downing" not in first and "postal code" in first
    assert "Downing" not in texts(chat.say("SW1A 1AA"))  # a wrong guess does not help either


def test_a_verified_whatsapp_user_does_not_own_someone_elses_order(stack):
    stranger = "1415555" + str(uuid.uuid4().int)[:4]
    body, headers = signed_whatsapp_request(
        whatsapp_text_payload(stranger, "what is the delivery address of order 554433", f"wamid.{uuid.uuid4().hex}"),
        TEST_SECRETS["WHATSAPP_APP_SECRET"],
    )
    before = len(stack.platform_api.requests)
    assert requests.post(f"{stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers,
                         timeout=60).status_code == 200
    sent = [r.json for r in stack.platform_api.requests[before:] if r.json and r.json.get("to") == stranger]
    said = json.dumps(sent)
    assert "Downing" not in said and "postal code" in said


# --------------------------------------------------------------- link codes


@pytest.fixture
def fresh_link_budgets(stack):
    """Every e2e test comes from 127.0.0.1: give the address its link budget back afterwards."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    yield
    for key in client.scan_iter(match="*:limit:link-*"):
        client.delete(key)
    client.close()


def test_guessing_link_codes_from_many_visitor_ids_is_throttled(stack, fresh_link_budgets):
    refusals = []
    for attempt in range(8):  # one address, a fresh visitor id each time
        refusals.append(texts(WebChat(stack).say(f"LINK {100000 + attempt:06d}")))
    assert "didn't work" in refusals[0]
    assert any("Too many attempts" in r for r in refusals[5:]), refusals


# --------------------------------------------------------------- limits


def test_every_route_has_one_body_limit(stack):
    huge = b"x" * (2 * 1024 * 1024)
    for path in ("/webhooks/webchat/webhook", "/webhooks/whatsapp/webhook", "/webhooks/agent/login",
                 "/conversations/c_x/messages", "/webhooks/webchat/session"):
        refused = requests.post(stack.rasa_url + path, data=huge, headers={"Content-Type": "application/json"},
                                timeout=60)
        assert refused.status_code == 413, (path, refused.status_code)


def test_cors_comes_from_an_allowlist_only(stack):
    asked = requests.options(f"{stack.rasa_url}/webhooks/webchat/webhook", timeout=30, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in {k.lower() for k in asked.headers}
    posted = requests.post(f"{stack.rasa_url}/webhooks/webchat/session", headers={"Origin": "https://evil.example"},
                           timeout=30)
    assert posted.headers.get("Access-Control-Allow-Origin") is None
    assert posted.headers.get("Access-Control-Allow-Credentials") is None
