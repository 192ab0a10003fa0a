"""Telegram connector: MarkdownV2 escaping against python-telegram-bot, parsing, and the webhook over HTTP."""
import json
import time
from pathlib import Path

import pytest
import requests
from telegram.utils.helpers import escape_markdown

from connectors.base import KIND_BUTTON, KIND_CONTACT, KIND_IGNORED, KIND_LOCATION, KIND_MEDIA, KIND_TEXT
from connectors.markup import escape_markdown_v2, to_telegram_v2
from connectors.telegram import TelegramInput
from tests.connectors.harness import EchoAgent, serve_channel
from tests.support import payloads as p
from threadline import identity, linking, outbound_failures

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"
USER = 123456789
BOT_TOKEN = "7000000001:AAH-test-token"
SECRET = "telegram-secret-token"

AWKWARD = [
    "",
    "plain words",
    "Price: $4.99 (incl. VAT) - 20% off!",
    "snake_case_name and *stars* and [brackets]",
    "a.b.c-d+e=f|g{h}i!j#k>l~m`n",
    "_*[]()~`>#+-=|{}.!",
    "emoji 🚚 ünïcödé ñ 漢字 ‏rtl‏",
    "tabs\tand\nnew\r\nlines",
    "```code``` and `inline`",
    "1. first\n2. second\n- bullet\n* star",
    "https://example.com/path_(x)?q=1&r=2#frag",
    "***triple*** __double__ ~~strike~~ ||spoiler||",
    "C:\\Users\\ana\\file.txt",
    "\\_ already escaped?",
    "trailing backslash \\",
    "order #4471 > #4470",
    "<b>html</b> & entities &amp;",
    "   spaces   ",
]


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_channel(api_base="http://127.0.0.1:9"):
    return TelegramInput.from_credentials({"bot_token": BOT_TOKEN, "secret_token": SECRET, "api_base": api_base})


class FakeRequest:
    def __init__(self, headers=None):
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}


# ----------------------------------------------------------------- escaping


@pytest.mark.parametrize("text", AWKWARD)
def test_escaping_matches_python_telegram_bot(text):
    # python-telegram-bot 13.15 leaves "\" alone, but Telegram reads "\x" as an
    # escaped "x": a literal backslash must itself be escaped. Apart from that
    # the two agree character for character.
    assert escape_markdown_v2(text) == escape_markdown(text.replace("\\", "\\\\"), version=2)
    if "\\" not in text:
        assert escape_markdown_v2(text) == escape_markdown(text, version=2)
    assert escape_markdown_v2(text, "code") == escape_markdown(text, version=2, entity_type="code")
    assert escape_markdown_v2(text, "pre") == escape_markdown(text, version=2, entity_type="pre")
    assert escape_markdown_v2(text, "url") == escape_markdown(text, version=2, entity_type="text_link")


@pytest.mark.parametrize("text", [t for t in AWKWARD if "*" not in t and "_" not in t and "`" not in t
                                  and "~" not in t and "[" not in t and "#" not in t])
def test_text_without_markdown_is_escaped_whole(text):
    assert to_telegram_v2(text) == escape_markdown_v2(text)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("**Order 4471** is _on its way_.", "*Order 4471* is _on its way_\\."),
        ("*italic* and **bold**!", "_italic_ and *bold*\\!"),
        ("~~old~~ new (v2.0)", "~old~ new \\(v2\\.0\\)"),
        ("Run `rm -rf *.tmp` now", "Run `rm -rf *.tmp` now"),
        ("See [the FAQ](https://x.io/faq_(v2)).", "See [the FAQ](https://x.io/faq_(v2\\))\\."),
        ("```\na_b*c\n```", "```\na_b*c\n```"),
        ("**bold _and italic_**", "*bold _and italic_*"),
        ("_a_ _b_", "_a_ _b_"),
        ("2*3*4 = 24 and snake_case", "2\\*3\\*4 \\= 24 and snake\\_case"),
        ("# Heading\n- item", "*Heading*\n• item"),
    ],
)
def test_markdown_becomes_markdown_v2_entities(source, expected):
    assert to_telegram_v2(source) == expected


def test_adjacent_italics_are_separated():
    from connectors.markup import Span, _render_v2

    italic = [Span("italic", children=[Span("text", "a")]), Span("italic", children=[Span("text", "b")])]
    assert _render_v2(italic) == "_a_\r_b_"


# ------------------------------------------------------------------ parsing


def test_secret_token_check():
    channel = make_channel()
    assert channel.verify(FakeRequest({"X-Telegram-Bot-Api-Secret-Token": SECRET}), b"{}")
    assert not channel.verify(FakeRequest({"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}), b"{}")
    assert not channel.verify(FakeRequest({}), b"{}")


def test_missing_bot_token_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with pytest.raises(Exception, match="TELEGRAM_BOT_TOKEN"):
        TelegramInput.from_credentials({"secret_token": "s"})


@pytest.mark.parametrize(
    "name, kind, content",
    [
        ("text", KIND_TEXT, "Where is my order 4471?"),
        ("edited", KIND_TEXT, "Where is my order 4472?"),
        ("callback_query", KIND_BUTTON, "/track_order"),
        ("start_link", KIND_TEXT, "/start 482913"),
        ("start", KIND_TEXT, "/start"),
        ("location", KIND_LOCATION, "location: -23.55052,-46.633308"),
        ("contact", KIND_CONTACT, "+16505551234"),
        ("photo", KIND_MEDIA, None),
        ("sticker", KIND_MEDIA, None),
    ],
)
def test_parse_updates(name, kind, content):
    (envelope,) = make_channel().parse(None, fixture(name))
    assert envelope.kind == kind and envelope.content == content
    assert envelope.channel_user_id == str(USER)
    assert envelope.message_id == str(fixture(name)["update_id"])


def test_profile_locale_and_flags():
    (text,) = make_channel().parse(None, fixture("text"))
    assert text.profile_name == "Ana Lima" and text.locale == "pt-BR" and text.extra["username"] == "analima"
    (edited,) = make_channel().parse(None, fixture("edited"))
    assert edited.extra["edited"] is True
    (contact,) = make_channel().parse(None, fixture("contact"))
    assert contact.phone == "+16505551234" and contact.phone_verified
    (query,) = make_channel().parse(None, fixture("callback_query"))
    assert query.extra["callback_query_id"] == "4382bfdwdsb323b2d9"


def test_deep_link_payload_is_passed_and_groups_are_ignored():
    (deep,) = make_channel().parse(None, p.telegram_text_update(USER, "/start order_4471", 5))
    assert deep.text == "order_4471" and deep.extra["start_payload"] == "order_4471"
    group = p.telegram_text_update(USER, "hi all", 6)
    group["message"]["chat"] = {"id": -100123, "type": "group", "title": "Friends"}
    (ignored,) = make_channel().parse(None, group)
    assert ignored.kind == KIND_IGNORED
    assert make_channel().parse(None, {"update_id": 7, "my_chat_member": {}}) == []


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def tg(recorder, redis):
    with serve_channel(make_channel(recorder.url)) as served:
        served.recorder = recorder
        served.redis = redis
        yield served


def post(served, update, secret=SECRET):
    return requests.post(served.url + "/webhook", data=json.dumps(update), headers=p.telegram_headers(secret), timeout=30)


SEND = f"/bot{BOT_TOKEN}/sendMessage"


@pytest.mark.services
def test_text_update_reaches_rasa_and_reply_is_markdown_v2(tg):
    assert post(tg, fixture("text")).status_code == 200
    (message,) = tg.agent.messages
    assert message.text == "Where is my order 4471?"
    assert message.metadata["locale"] == "pt-BR" and message.metadata["trust"] == "low"
    assert message.sender_id == identity.resolve("telegram", str(USER)).customer_id
    (request,) = tg.recorder.wait_for(1)
    assert request.path == SEND
    assert request.json == {"chat_id": str(USER), "text": "You said: Where is my order 4471?", "parse_mode": "MarkdownV2"}


@pytest.mark.services
def test_buttons_become_an_inline_keyboard(tg):
    post(tg, p.telegram_text_update(USER, "buttons 3", 11))
    (request,) = tg.recorder.wait_for(1)
    assert request.json["reply_markup"] == {"inline_keyboard": [[
        {"text": f"Option {i}", "callback_data": f'/choose{{"n":{i}}}'} for i in (1, 2, 3)]]}
    tg.recorder.clear()
    post(tg, p.telegram_text_update(USER, "buttons 5", 12))
    (request,) = tg.recorder.wait_for(1)
    assert len(request.json["reply_markup"]["inline_keyboard"]) == 5


@pytest.mark.services
def test_long_payload_is_aliased_and_resolved_on_the_callback(recorder, redis):
    payload = '/order_status{"order_id":"A-4471-2023-11-22","email":"ana.lima@example.com"}'
    agent = EchoAgent(lambda m: [{"text": "Which?", "buttons": [{"title": "That one", "payload": payload}]}]
                      if m.text == "hi" else [])
    with serve_channel(make_channel(recorder.url), agent) as served:
        post(served, p.telegram_text_update(USER, "hi", 21))
        (request,) = recorder.wait_for(1)
        data = request.json["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        assert len(data.encode()) <= 64 and data != payload
        post(served, p.telegram_callback_update(USER, data, 22, query_id="q-22"))
        assert agent.messages[-1].text == payload
        answer = recorder.wait_for(lambda rs: any(r.path.endswith("answerCallbackQuery") for r in rs))
        (ack,) = [r for r in answer if r.path.endswith("answerCallbackQuery")]
        assert ack.json == {"callback_query_id": "q-22"}


@pytest.mark.services
def test_callback_query_is_answered_and_payload_forwarded(tg):
    post(tg, fixture("callback_query"))
    assert tg.agent.messages[0].text == "/track_order"
    requests_seen = tg.recorder.wait_for(2)
    assert requests_seen[0].path == f"/bot{BOT_TOKEN}/answerCallbackQuery"
    assert requests_seen[0].json == {"callback_query_id": "4382bfdwdsb323b2d9"}


@pytest.mark.services
def test_same_update_twice_is_processed_once(tg):
    post(tg, fixture("callback_query"))
    post(tg, fixture("callback_query"))
    assert len(tg.agent.messages) == 1
    time.sleep(0.2)
    assert len(tg.recorder.requests_to(f"/bot{BOT_TOKEN}/answerCallbackQuery")) == 1


@pytest.mark.services
def test_wrong_or_missing_secret_is_refused(tg):
    assert post(tg, fixture("text"), secret="wrong").status_code == 403
    assert requests.post(tg.url + "/webhook", data=json.dumps(fixture("text"))).status_code == 403
    assert tg.agent.messages == [] and tg.recorder.requests == []
    assert [k for k in tg.redis.scan_iter(match="tltest*", count=1000) if b":limit:" not in k] == []


@pytest.mark.services
def test_malformed_json_and_non_updates_are_bad_requests(tg):
    bad = requests.post(tg.url + "/webhook", data="{'update_id': 1", headers=p.telegram_headers(SECRET))
    assert bad.status_code == 400
    assert post(tg, {"message": {"text": "no update id"}}).status_code == 400


@pytest.mark.services
def test_start_with_link_code_links_the_chat(tg):
    owner = identity.resolve("webchat", "visitor-telegram-link-0001")
    identity.record_channel_use(owner.customer_id, "webchat")
    code = linking.issue_link_code(owner.customer_id)
    post(tg, p.telegram_text_update(USER, f"/start {code}", 31))
    (message,) = tg.agent.messages
    assert message.text == f"LINK {code}" and message.sender_id == owner.customer_id
    assert message.metadata["link_result"]["ok"] is True
    assert message.metadata["trust"] == "low"
    assert identity.address_for(owner.customer_id, "telegram") == str(USER)


@pytest.mark.services
def test_photo_gets_the_polite_reply(tg):
    assert post(tg, fixture("photo")).status_code == 200
    assert tg.agent.messages == []
    (request,) = tg.recorder.wait_for(1)
    assert "only read text" in request.json["text"]


@pytest.mark.services
def test_throttling_honours_retry_after_from_the_body(tg):
    tg.recorder.respond(SEND, status=429, times=1, json={
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1}})
    post(tg, fixture("text"))
    first, second = tg.recorder.wait_for(2)
    assert second.time - first.time >= 0.95


@pytest.mark.services
def test_unparseable_entities_fall_back_to_plain_text(tg):
    tg.recorder.respond(SEND, status=400, times=1, json={
        "ok": False, "error_code": 400, "description": "Bad Request: can't parse entities: Character '.' is reserved"})
    post(tg, p.telegram_text_update(USER, "**v2.0** ready", 41))
    first, second = tg.recorder.wait_for(2)
    assert first.json["parse_mode"] == "MarkdownV2"
    assert second.json == {"chat_id": str(USER), "text": "You said: v2.0 ready"}
    assert outbound_failures.pending(redis=tg.redis) == []


@pytest.mark.services
def test_api_down_keeps_the_message_without_the_token(tg):
    tg.recorder.respond(SEND, status=502)
    post(tg, fixture("text"))
    tg.recorder.wait_for(4)
    time.sleep(0.3)
    (stored,) = outbound_failures.pending(redis=tg.redis)
    assert stored.channel == "telegram" and "502" in stored.error
    assert stored.message == {"text": "You said: Where is my order 4471?"}  # the response, not the platform body
    assert BOT_TOKEN not in json.dumps(stored.__dict__) and str(USER) not in json.dumps(stored.__dict__)
