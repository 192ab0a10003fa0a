"""The web chat's live side: socket.io (Rasa webchat protocol), proactive messages,
server-sent events and the outbox.

A python-socketio ``AsyncClient`` plays rasa-webchat against the channel served by
``harness.serve_channel``; proactive messages are sent the way Rasa's
``trigger_intent`` does, through ``get_output_channel()`` on the server's own loop.
"""
import asyncio
import json
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import pytest
import requests
import socketio

import time

from connectors.webchat import WebchatInput, visitor_token
from tests.connectors.harness import serve_channel
from threadline import identity

pytestmark = pytest.mark.services

SECRET = "webchat-identity-secret"
SESSION = "0123456789abcdef0123456789abcdef"  # the visitor id
TOKEN = None  # its token, made once the settings (and so the key) are in place


@pytest.fixture(autouse=True)
def _token(redis):
    global TOKEN
    TOKEN = visitor_token(SESSION)


@pytest.fixture
def web(monkeypatch, redis):
    monkeypatch.setenv("WEBCHAT_IDENTITY_SECRET", SECRET)
    with serve_channel(WebchatInput.from_credentials({})) as served:
        yield served


class Browser:
    """One rasa-webchat-like socket.io client."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue = asyncio.Queue()
        for name in ("session_confirm", "bot_uttered"):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def record(data: Any = None) -> None:
            await self.events.put((name, data))

        return record

    async def connect(self, served, transports=("polling",), auth: Optional[Dict[str, Any]] = None) -> "Browser":
        await self.client.connect(
            served.server.url, socketio_path="/socket.io", transports=list(transports), auth=auth, wait_timeout=10
        )
        return self

    async def start_session(self, session_id: Optional[str] = None) -> str:
        await self.client.emit("session_request", {"session_id": session_id})
        return await self.expect("session_confirm")

    async def say(self, text: str, session_id: Optional[str] = None, **fields: Any) -> None:
        await self.client.emit("user_uttered", {"message": text, "session_id": session_id, **fields})

    async def expect(self, name: str, timeout: float = 10) -> Any:
        while True:
            got, data = await asyncio.wait_for(self.events.get(), timeout)
            if got == name:
                return data

    async def nothing_more(self, wait: float = 0.5) -> None:
        await asyncio.sleep(wait)
        assert self.events.empty(), self.events.get_nowait()

    async def close(self) -> None:
        await self.client.disconnect()
        await self.client.eio.wait()  # its polling task may open one more HTTP session...
        if self.client.eio.http is not None:
            await self.client.eio.http.close()  # ...which the client never closes


@pytest.fixture
async def browsers():
    opened: List[Browser] = []

    def new() -> Browser:
        opened.append(Browser())
        return opened[-1]

    yield new
    for browser in opened:
        await browser.close()


def on_server(served, coro) -> "asyncio.Future":
    """Run ``coro`` on the server's loop, like Rasa's trigger_intent handler does."""
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, served.server._loop))


async def push(served, customer_id: str, message: Dict[str, Any]) -> None:
    await on_server(served, served.channel.get_output_channel().send_response(customer_id, dict(message)))


async def wait_for_messages(served, count: int, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(served.agent.messages) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(served.agent.messages)} of {count} messages"
        await asyncio.sleep(0.02)


async def read_events(response: aiohttp.ClientResponse, count: int, timeout: float = 10) -> List[Tuple[str, Any]]:
    """``count`` server-sent events (name, parsed data), skipping comments."""
    events: List[Tuple[str, Any]] = []
    name, data = None, []
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), timeout)).decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


# ---------------------------------------------------------------------- socket.io


async def test_session_request_confirms_the_visitor_id(web, browsers):
    browser = await browsers().connect(web)
    fresh = await browser.start_session()
    assert len(fresh) == 65 and fresh != TOKEN  # "<visitor id>.<proof>"
    assert await browser.start_session(TOKEN) == TOKEN
    # Someone's bare visitor id, or a made-up one, never joins that visitor: a new one starts.
    for claimed in (SESSION, "user1", SESSION + "." + "0" * 32):
        given = await browser.start_session(claimed)
        assert given not in (claimed, TOKEN) and len(given) == 65


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_user_uttered_is_answered_with_bot_uttered(web, browsers, transport):
    browser = await browsers().connect(web, transports=[transport])
    session = await browser.start_session(TOKEN)
    await browser.say("hello", session, customData={"language": "fr"})
    assert await browser.expect("bot_uttered") == {"text": "You said: hello"}

    (message,) = web.agent.messages
    assert message.sender_id.startswith("c_")
    assert message.metadata["channel_user_id"] == SESSION
    assert message.metadata["transport"] == "socketio"
    assert message.metadata["locale"] == "fr"
    assert message.metadata["trust"] == "anonymous"


async def test_the_acknowledgement_says_stored_and_a_turn_that_failed_after_replying_is_asked_again(
        web, browsers, monkeypatch):
    """The socket's acknowledgement is its 200: a client that asks for one re-sends what was not stored."""
    browser = await browsers().connect(web)
    session = await browser.start_session(TOKEN)
    first = {"message": "hello", "session_id": session, "message_id": "m-1"}
    assert await browser.client.call("user_uttered", first, timeout=10) == {"status": "processed", "message_id": "m-1"}
    assert await browser.expect("bot_uttered") == {"text": "You said: hello"}
    assert await browser.client.call("user_uttered", first, timeout=10) == {"status": "duplicate", "message_id": "m-1"}

    answer = web.agent.handle_message

    async def replies_then_cannot_save(message):
        await answer(message)
        raise ConnectionError("Redis went away before the tracker was saved")

    monkeypatch.setattr(web.agent, "handle_message", replies_then_cannot_save)
    second = {"message": "again", "session_id": session, "message_id": "m-2"}
    assert await browser.client.call("user_uttered", second, timeout=10) == {
        "error": "temporarily unavailable; send it again", "retry": True}
    assert await browser.expect("bot_uttered") == {"text": "You said: again"}  # the reply went out first
    monkeypatch.setattr(web.agent, "handle_message", answer)
    assert await browser.client.call("user_uttered", second, timeout=10) == {"status": "processed", "message_id": "m-2"}
    assert [m.text for m in web.agent.messages] == ["hello", "again", "again"]


async def test_buttons_are_quick_replies_and_clicking_one_sends_its_payload(web, browsers):
    browser = await browsers().connect(web)
    session = await browser.start_session(TOKEN)
    await browser.say("buttons 2", session)
    reply = await browser.expect("bot_uttered")
    assert reply["text"] == "Pick one"
    assert reply["quick_replies"][0] == {"content_type": "text", "title": "Option 1", "payload": '/choose{"n":1}'}

    await browser.say(reply["quick_replies"][0]["payload"], session)  # what rasa-webchat sends on a click
    await browser.expect("bot_uttered")
    assert web.agent.messages[-1].text == '/choose{"n":1}'
    assert web.agent.messages[-1].metadata["kind"] == "button"


async def test_a_message_before_session_request_starts_a_session(web, browsers):
    browser = await browsers().connect(web)
    await browser.say("hi", TOKEN)
    assert await browser.expect("session_confirm") == TOKEN
    assert await browser.expect("bot_uttered") == {"text": "You said: hi"}


async def test_the_session_survives_a_reconnect_and_reaches_every_tab(web, browsers):
    first = await browsers().connect(web)
    await first.start_session(TOKEN)
    await first.say("one", TOKEN)
    await first.expect("bot_uttered")
    await first.close()

    tab_a = await browsers().connect(web)
    tab_b = await browsers().connect(web)
    await tab_a.start_session(TOKEN)
    await tab_b.start_session(TOKEN)
    await tab_a.say("two", TOKEN)
    assert await tab_a.expect("bot_uttered") == {"text": "You said: two"}
    assert await tab_b.expect("bot_uttered") == {"text": "You said: two"}
    one, two = web.agent.messages
    assert one.sender_id == two.sender_id


async def test_replies_go_only_to_the_visitor_who_wrote(web, browsers):
    alice = await browsers().connect(web)
    bob = await browsers().connect(web)
    await alice.start_session(TOKEN)
    await bob.start_session()
    await alice.say("for alice only", TOKEN)
    await alice.expect("bot_uttered")
    await bob.nothing_more()


async def test_signed_identity_in_custom_data_or_auth(web, browsers):
    expires = int(time.time()) + 3600
    signed = {"customer_ref": "cust-42", "expires": expires,
              "signature": identity.sign_web_identity("cust-42", SECRET, expires)}
    in_data = await browsers().connect(web)
    await in_data.start_session()
    await in_data.say("hi", customData=signed)
    await in_data.expect("bot_uttered")

    in_auth = await browsers().connect(web, auth=signed)
    await in_auth.start_session()
    await in_auth.say("hi")
    await in_auth.expect("bot_uttered")

    one, two = web.agent.messages
    assert one.metadata["trust"] == two.metadata["trust"] == "verified"
    assert one.sender_id == two.sender_id
    assert one.metadata["channel_user_id"] != two.metadata["channel_user_id"]


async def test_malformed_socket_messages_are_ignored(web, browsers):
    browser = await browsers().connect(web)
    await browser.start_session()
    await browser.client.emit("user_uttered", "just a string")
    await browser.say("")
    await browser.nothing_more()
    assert web.agent.messages == []


# --------------------------------------------------------------- proactive delivery


async def test_proactive_message_reaches_the_connected_socket(web, browsers):
    browser = await browsers().connect(web)
    await browser.start_session(TOKEN)
    await browser.say("hi", TOKEN)
    await browser.expect("bot_uttered")
    customer = web.agent.messages[-1].sender_id

    await push(web, customer, {"text": "Your appointment is tomorrow.", "buttons": [{"title": "OK", "payload": "/affirm"}]})
    reply = await browser.expect("bot_uttered")
    assert reply["text"] == "Your appointment is tomorrow."
    assert reply["quick_replies"][0]["payload"] == "/affirm"


async def test_proactive_message_waits_in_the_outbox_until_the_visitor_connects(web, browsers):
    requests.post(web.url + "/webhook", json={"sender": TOKEN, "message": "hi"}, timeout=10)
    customer = web.agent.messages[-1].sender_id
    await push(web, customer, {"text": "An agent replied: we're on it."})
    await push(web, customer, {"text": "Pick a time", "buttons": [{"title": "9am", "payload": "/choose_slot"}]})

    async with aiohttp.ClientSession() as http:
        async with http.get(web.url + "/events", params={"sender": TOKEN}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = await read_events(stream, 2)
    assert events == [
        ("bot", {"recipient_id": SESSION, "text": "An agent replied: we're on it."}),
        ("bot", {"recipient_id": SESSION, "text": "Pick a time", "buttons": [{"title": "9am", "payload": "/choose_slot"}]}),
    ]
    # Delivered once: a socket.io session opened now finds the outbox empty...
    browser = await browsers().connect(web)
    await browser.start_session(TOKEN)
    await browser.nothing_more()
    # ...and the button delivered through the stream counts as offered.
    requests.post(web.url + "/webhook", json={"sender": TOKEN, "message": "/choose_slot"}, timeout=10)
    assert web.agent.messages[-1].metadata["kind"] == "button"


async def test_a_socket_session_also_drains_the_outbox(web, browsers):
    requests.post(web.url + "/webhook", json={"sender": TOKEN, "message": "hi"}, timeout=10)
    await push(web, web.agent.messages[-1].sender_id, {"text": "Still there?"})
    browser = await browsers().connect(web)
    await browser.start_session(TOKEN)
    assert await browser.expect("bot_uttered") == {"text": "Still there?"}


async def test_event_stream_gets_live_messages(web):
    requests.post(web.url + "/webhook", json={"sender": TOKEN, "message": "hi"}, timeout=10)
    customer = web.agent.messages[-1].sender_id
    async with aiohttp.ClientSession() as http:
        async with http.get(web.url + "/events", params={"sender": TOKEN}) as stream:
            await asyncio.wait_for(stream.content.readline(), 5)  # ": connected"
            await push(web, customer, {"text": "Hello from an agent"})
            assert await read_events(stream, 1) == [("bot", {"recipient_id": SESSION, "text": "Hello from an agent"})]


async def test_direct_calls_keep_buttons_and_images(web):
    """The agent desk calls the output's send_* methods directly, not send_response."""
    requests.post(web.url + "/webhook", json={"sender": TOKEN, "message": "hi"}, timeout=10)
    customer = web.agent.messages[-1].sender_id
    output = web.channel.get_output_channel()
    await on_server(web, output.send_text_with_buttons(customer, "Rate us", [{"title": "Great", "payload": "/affirm"}]))
    await on_server(web, output.send_image_url(customer, "https://cdn.example.com/map.png"))
    await on_server(web, output.send_custom_json(customer, {"internal_note": "not for the customer"}))
    async with aiohttp.ClientSession() as http:
        async with http.get(web.url + "/events", params={"sender": TOKEN}) as stream:
            events = await read_events(stream, 2)
            assert events == [
                ("bot", {"recipient_id": SESSION, "text": "Rate us", "buttons": [{"title": "Great", "payload": "/affirm"}]}),
                ("bot", {"recipient_id": SESSION, "image": "https://cdn.example.com/map.png"}),
            ]
            with pytest.raises(asyncio.TimeoutError):
                await read_events(stream, 1, timeout=0.5)


async def test_event_stream_needs_the_visitor_token(web):
    for sender in ("x", SESSION, SESSION + "." + "f" * 32):
        refused = requests.get(web.url + "/events", params={"sender": sender}, timeout=10)
        assert refused.status_code == 403 and "sender" in refused.json()["error"]


async def test_proactive_message_to_a_customer_without_a_web_visitor_is_recorded(web, redis):
    from threadline import outbound_failures

    await push(web, "c_nobody", {"text": "Hello?"})
    (record,) = outbound_failures.pending(redis=redis)
    assert record.channel == "webchat" and record.message == {"text": "Hello?"}
