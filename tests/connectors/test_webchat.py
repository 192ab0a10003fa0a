"""The web chat channel over HTTP: REST webhook, pages, identity, buttons, dedupe, link codes.

Served for real by ``harness.serve_channel`` (Rasa's own ``configure_app``) with the
echoing ``EchoAgent``; socket.io and live delivery are in ``test_webchat_live.py``.
"""
import json
from pathlib import Path

import pytest
import requests
import yaml
from rasa.shared.exceptions import RasaException

import time

from connectors.webchat import WebchatInput, visitor_token
from tests.connectors.harness import EchoAgent, serve_channel
from threadline import identity, linking, settings
from threadline.stack import channel_status

pytestmark = pytest.mark.services

SECRET = "webchat-identity-secret"
ROOT = Path(__file__).resolve().parents[2]


def vid(n: int = 1) -> str:
    """A visitor id (what the conversation's metadata carries)."""
    return f"visitor{n:02d}-" + "a1b2c3d4e5f6"


def visitor(n: int = 1) -> str:
    """The visitor's token (what the browser presents)."""
    return visitor_token(vid(n))


def signed_fields(ref, secret=SECRET):
    expires = int(time.time()) + 3600
    return {"customer_ref": ref, "expires": expires, "signature": identity.sign_web_identity(ref, secret, expires)}


@pytest.fixture
def channel_env(monkeypatch, redis):
    monkeypatch.setenv("WEBCHAT_IDENTITY_SECRET", SECRET)
    monkeypatch.setenv("WEBCHAT_TELEGRAM_BOT", "@ThreadlineBot")
    monkeypatch.setenv("WEBCHAT_WHATSAPP_NUMBER", "+1 415 555 0100")


@pytest.fixture
def web(channel_env):
    with serve_channel(WebchatInput.from_credentials({"identity_secret_env": "WEBCHAT_IDENTITY_SECRET"})) as served:
        yield served


def say(served, text, sender=None, **fields):
    body = {"sender": sender or visitor(), "message": text, **fields}
    return requests.post(served.url + "/webhook", json=body, timeout=30)


# ------------------------------------------------------------------ configuration


def test_credentials_block_is_always_on():
    raw = yaml.safe_load((ROOT / "credentials.yml").read_text())
    assert raw["connectors.webchat.WebchatInput"] == {"identity_secret_env": "WEBCHAT_IDENTITY_SECRET"}
    on, _ = channel_status(ROOT / "credentials.yml", settings.Settings({}))
    assert "connectors.webchat.WebchatInput" in on


def test_works_without_the_identity_secret(monkeypatch):
    monkeypatch.delenv("WEBCHAT_IDENTITY_SECRET", raising=False)
    channel = WebchatInput.from_credentials({"identity_secret_env": "WEBCHAT_IDENTITY_SECRET"})
    assert channel.identity_secret is None
    assert channel.widget_config()["signed_identities"] is False
    assert channel.config["socketio_path"] == "/socket.io"


def test_identity_secret_env_must_be_the_one_identity_verifies_with():
    with pytest.raises(RasaException, match="WEBCHAT_IDENTITY_SECRET"):
        WebchatInput.from_credentials({"identity_secret_env": "OTHER_SECRET"})


def test_allowed_payloads_from_credentials():
    channel = WebchatInput.from_credentials({"allowed_payloads": "/get_started, /link_channel"})
    assert channel.allowed_payloads == {"/get_started", "/link_channel"}


# ------------------------------------------------------------------------- routes


def test_health_page_widget_and_config(web):
    assert requests.get(web.url + "/", timeout=10).json() == {"status": "ok", "channel": "webchat"}

    page = requests.get(web.url + "/chat", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="widget.js" data-mode="page">' in page.text

    script = requests.get(web.url + "/widget.js", timeout=10)
    assert script.headers["content-type"].startswith("application/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "window.ThreadlineChat" in script.text
    assert "innerHTML" not in script.text  # bot text is only ever rendered as text nodes
    assert requests.get(web.url + "/widget.css", timeout=10).headers["content-type"].startswith("text/css")

    assert requests.get(web.url + "/config", timeout=10).json() == {
        "title": "Threadline",
        "telegram_bot": "ThreadlineBot",
        "whatsapp_number": "14155550100",
        "signed_identities": True,
        "link_payload": "/link_channel",
        "socketio_path": "/socket.io",
        "session_path": "session",
    }


def test_a_browser_opening_the_root_gets_the_chat_page(web):
    opened = requests.get(web.url + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, timeout=10)
    assert opened.url == web.url + "/chat"
    assert opened.headers["content-type"].startswith("text/html")
    assert requests.get(web.url + "/", headers={"Accept": "*/*"}, timeout=10).json()["status"] == "ok"


# --------------------------------------------------------------------------- REST


def test_reply_comes_back_in_rest_shape_with_metadata(web):
    reply = say(web, "hello there", metadata={"language": "de-DE", "page": "/pricing"})
    assert reply.status_code == 200
    assert reply.json() == [{"recipient_id": vid(), "text": "You said: hello there"}]

    (message,) = web.agent.messages
    assert message.sender_id.startswith("c_")  # the customer id, not the visitor id
    assert message.input_channel == "webchat"
    meta = message.metadata
    assert meta["channel"] == "webchat"
    assert meta["channel_user_id"] == vid()
    assert visitor() not in json.dumps(meta)  # the token's proof never reaches the conversation
    assert meta["trust"] == "anonymous"
    assert meta["transport"] == "rest"
    assert meta["locale"] == "de-DE"
    assert meta["client_metadata"] == {"language": "de-DE", "page": "/pricing"}
    assert meta["channel_label"] == "the web chat"  # "we were ... on the web chat"
    assert meta["trace_id"] and meta["message_id"]


def test_same_visitor_same_customer(web):
    say(web, "one")
    say(web, "two")
    first, second = web.agent.messages
    assert first.sender_id == second.sender_id
    assert second.metadata["is_new_customer"] is False


@pytest.mark.parametrize(
    "body, says",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"message": "hi"}).encode(), "sender is missing"),
        (json.dumps({"sender": "short", "message": "hi"}).encode(), "not a visitor token"),
        (json.dumps({"sender": vid(), "message": "hi"}).encode(), "bare visitor id"),
        (json.dumps({"sender": vid() + "." + "0" * 32, "message": "hi"}).encode(), "does not match"),
        (json.dumps({"sender": "a" * 20 + "<script>", "message": "hi"}).encode(), "not a visitor token"),
        (json.dumps({"sender": visitor(), "message": ""}).encode(), "non-empty string"),
        (json.dumps({"sender": visitor(), "message": {"text": "hi"}}).encode(), "non-empty string"),
        (json.dumps({"sender": visitor(), "message": "x" * 4097}).encode(), "longer than 4096"),
    ],
)
def test_bad_requests_say_what_is_wrong(web, body, says):
    reply = requests.post(web.url + "/webhook", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 400
    assert says in reply.json()["error"]
    assert web.agent.messages == []


def test_a_new_visitor_gets_a_token_and_someone_elses_id_gets_nothing(web):
    issued = requests.post(web.url + "/session", timeout=10).json()
    assert visitor_token(issued["visitor"]) == issued["sender"]
    assert say(web, "hi", sender=issued["sender"]).status_code == 200
    # Knowing the visitor id (it is in the conversation's metadata) is not enough.
    assert say(web, "hi", sender=issued["visitor"]).status_code == 400
    assert requests.get(web.url + "/events", params={"sender": issued["visitor"]}, timeout=10).status_code == 403


def test_body_over_the_limit_is_refused(channel_env):
    with serve_channel(WebchatInput({}, max_body_bytes=512)) as served:
        reply = say(served, "x" * 600)
        assert reply.status_code == 413
        assert served.agent.messages == []


def test_buttons_and_split_paragraphs():
    def bot(message):
        if message.text == "menu":
            return [{"text": "Pick one", "buttons": [{"title": "Track an order", "payload": "/check_order"}]},
                    {"image": "https://cdn.example.com/a.png"}]
        return [{"text": "First paragraph.\n\nSecond one."}]

    with serve_channel(WebchatInput({}), EchoAgent(bot)) as served:
        assert say(served, "menu").json() == [
            {"recipient_id": vid(), "text": "Pick one",
             "buttons": [{"title": "Track an order", "payload": "/check_order"}]},
            {"recipient_id": vid(), "image": "https://cdn.example.com/a.png"},
        ]
        assert [m["text"] for m in say(served, "more").json()] == ["First paragraph.", "Second one."]


def test_internal_notes_are_not_sent():
    def bot(message):
        return [{"custom": {"internal_note": "customer sounds upset"}}, {"text": "Sure."}]

    with serve_channel(WebchatInput({}), EchoAgent(bot)) as served:
        assert say(served, "hi").json() == [{"recipient_id": vid(), "text": "Sure."}]


# ------------------------------------------------------------------------ buttons


def test_offered_payload_counts_as_a_button_click(web):
    offered = say(web, "buttons 2").json()[0]["buttons"]
    say(web, offered[0]["payload"])
    clicked = web.agent.messages[-1]
    assert clicked.text == '/choose{"n":1}'
    assert clicked.metadata["kind"] == "button"


def test_typed_intents_are_neutralised(web):
    say(web, '/inform{"order_number": "000000"}')
    typed = web.agent.messages[-1]
    assert typed.text == 'inform{"order_number": "000000"}'
    assert typed.metadata["kind"] == "text"


def test_offers_are_per_customer(web):
    say(web, "buttons 2", sender=visitor(1))
    say(web, '/choose{"n":1}', sender=visitor(2))
    assert web.agent.messages[-1].text == 'choose{"n":1}'


def test_widget_payloads_are_allowed_without_an_offer(web):
    say(web, "/link_channel")
    assert web.agent.messages[-1].text == "/link_channel"
    assert web.agent.messages[-1].metadata["kind"] == "button"


# ------------------------------------------------------------------------- dedupe


def test_a_retried_message_runs_once_and_gets_the_same_replies(web):
    first = say(web, "hello", message_id="m-1")
    retry = say(web, "hello", message_id="m-1")
    assert len(web.agent.messages) == 1
    assert retry.status_code == 200
    assert retry.json() == first.json() == [{"recipient_id": vid(), "text": "You said: hello"}]


def test_message_ids_are_per_visitor(web):
    say(web, "hello", sender=visitor(1), message_id="1")
    say(web, "hello", sender=visitor(2), message_id="1")
    assert len(web.agent.messages) == 2


def test_messages_without_an_id_are_never_deduplicated(web):
    say(web, "hello")
    say(web, "hello")
    assert len(web.agent.messages) == 2


# ------------------------------------------------------------------------ identity


def test_signed_identity_makes_the_visitor_verified_and_joins_visitors(web):
    fields = signed_fields("cust-42")
    say(web, "hi", sender=visitor(1), **fields)
    say(web, "hi", sender=visitor(2), **fields)
    say(web, "hi", sender=visitor(3))
    say(web, "hi again", sender=visitor(1))  # unsigned: verified trust ends with the signature
    one, two, other, later = web.agent.messages
    assert one.metadata["trust"] == two.metadata["trust"] == "verified"
    assert one.sender_id == two.sender_id == later.sender_id != other.sender_id
    assert other.metadata["trust"] == later.metadata["trust"] == "anonymous"
    assert "cust-42" not in json.dumps(one.metadata)  # no refs or signatures in the tracker
    assert fields["signature"] not in json.dumps(one.metadata)


def test_signed_identity_in_metadata(web):
    say(web, "hi", metadata={**signed_fields("cust-7"), "language": "en"})
    meta = web.agent.messages[-1].metadata
    assert meta["trust"] == "verified"
    assert meta["client_metadata"] == {"language": "en"}


def test_invalid_expired_or_unexpiring_signatures_stay_anonymous(web):
    say(web, "hi", customer_ref="cust-42", signature="0" * 64, expires=int(time.time()) + 60)
    old = int(time.time()) - 10
    say(web, "hi", customer_ref="cust-42", expires=old, signature=identity.sign_web_identity("cust-42", SECRET, old))
    say(web, "hi", customer_ref="cust-42", signature=identity.sign_web_identity("cust-42", SECRET))
    say(web, "hi", customer_ref="cust-42", signature="é" * 64, expires=int(time.time()) + 60)
    assert [m.metadata["trust"] for m in web.agent.messages] == ["anonymous"] * 4


def test_client_metadata_cannot_set_reserved_keys(web):
    say(web, "hi", metadata={"trust": "verified", "channel": "whatsapp", "owner": 1, "threadline_sig": "x"})
    meta = web.agent.messages[-1].metadata
    assert (meta["trust"], meta["channel"], meta["owner"]) == ("anonymous", "webchat", None)
    assert meta["client_metadata"]["trust"] == "verified"  # kept, as what the client said


def test_without_the_secret_signed_identities_are_off(monkeypatch, redis):
    monkeypatch.delenv("WEBCHAT_IDENTITY_SECRET", raising=False)
    with serve_channel(WebchatInput.from_credentials({})) as served:
        reply = say(served, "hi", **signed_fields("cust-42"))
        assert reply.status_code == 200
        assert served.agent.messages[-1].metadata["trust"] == "anonymous"
        assert requests.get(served.url + "/config", timeout=10).json()["signed_identities"] is False


def test_link_code_joins_the_visitor_to_the_customer_of_another_channel(web, redis):
    telegram = identity.resolve("telegram", "777001", redis=redis)
    identity.record_channel_use(telegram.customer_id, "telegram", redis=redis)
    code = linking.issue_link_code(telegram.customer_id, redis=redis)
    say(web, f"link {code}")
    message = web.agent.messages[-1]
    assert message.sender_id == telegram.customer_id
    assert message.text == f"LINK {code}"
    assert message.metadata["link_result"]["ok"] is True
    assert message.metadata["trust"] == "low"
    assert identity.address_for(telegram.customer_id, "webchat", redis) == vid()


def test_joining_a_verified_customer_waits_for_its_confirmation(web, redis):
    whatsapp = identity.resolve("whatsapp", "14155550123", phone="14155550123", verified_phone=True, redis=redis)
    identity.record_channel_use(whatsapp.customer_id, "whatsapp", redis=redis)
    code = linking.issue_link_code(whatsapp.customer_id, redis=redis)
    say(web, f"link {code}")
    message = web.agent.messages[-1]
    assert message.sender_id != whatsapp.customer_id  # not joined yet
    assert message.metadata["link_result"]["pending"] is True
    assert message.metadata["link_result"]["reason"] == "pending_confirmation"
    assert identity.address_for(whatsapp.customer_id, "webchat", redis) is None
