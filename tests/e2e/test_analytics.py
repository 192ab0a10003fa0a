"""Analytics end to end: 60 scripted conversations through the real webhooks, KPIs equal to the hand count.

The stack's own event relay publishes every stored event to the business
database (Rasa's SQL broker) and its analytics consumer folds them; the test
only talks to the webhooks and then reads the KPIs for its own customers.
"""
import itertools
import random
import time
import uuid

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.support.payloads import (
    signed_whatsapp_request,
    telegram_headers,
    telegram_text_update,
    whatsapp_text_payload,
)
from tests.support.web import WebChat
from threadline import identity
from threadline.analytics import kpis
from threadline.journeys.store import now

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def whatsapp(stack, wa_id, text):
    payload = whatsapp_text_payload(wa_id, text, f"wamid.{uuid.uuid4().hex}", name="Jo Example")
    body, headers = signed_whatsapp_request(payload, TEST_SECRETS["WHATSAPP_APP_SECRET"])
    reply = requests.post(f"{stack.rasa_url}/webhooks/whatsapp/webhook", data=body, headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    return identity.channel_identity("whatsapp", wa_id).customer_id


def telegram(stack, user_id, text):
    update = telegram_text_update(int(user_id), text, int(str(uuid.uuid4().int)[:8]), message_id=1)
    reply = requests.post(f"{stack.rasa_url}/webhooks/telegram/webhook", json=update,
                          headers=telegram_headers(TEST_SECRETS["TELEGRAM_SECRET_TOKEN"]), timeout=60)
    assert reply.status_code == 200, reply.text
    return identity.channel_identity("telegram", str(user_id)).customer_id


_NUMBERS = itertools.count(random.randrange(0, 5000))
_TELEGRAM = itertools.count(random.randrange(10**8, 9 * 10**8))


def new_wa():
    """A WhatsApp number no other conversation of this test uses (random draws collided: 59 of 60)."""
    return f"1415557{next(_NUMBERS):04d}"


def new_tg():
    return str(next(_TELEGRAM))


def test_sixty_conversations_give_the_kpis_counted_by_hand(stack):
    customers = set()
    for _ in range(20):  # contained on the web chat: a greeting, a store question
        web = WebChat(stack)
        web.say("hi")
        web.say("what are your opening hours?")
        customers.add(web.customer_id)
    for _ in range(10):  # handed off on WhatsApp
        customers.add(whatsapp(stack, new_wa(), "I want to talk to a person"))
    for _ in range(10):  # not understood on Telegram
        customers.add(telegram(stack, new_tg(), "qwzx vbnm plk"))
    for _ in range(10):  # an order check begun on WhatsApp, continued on Telegram: picked up, nothing asked twice
        wa, tg = new_wa(), new_tg()
        customer = whatsapp(stack, wa, "where is my order?")
        identity.link("telegram", tg, customer, "low")  # what a confirmed link code does
        assert telegram(stack, tg, "482913") == customer
        customers.add(customer)
    for _ in range(10):  # abandoned: asked where the order is, never answered
        customers.add(whatsapp(stack, new_wa(), "where is my order?"))
    assert len(customers) == 60

    today = now().date()
    deadline = time.monotonic() + 120
    while True:
        report = kpis.report(today, today, customers=customers)
        total = [r for r in report["totals"] if r["channel"] == "all"]
        if total and total[0]["messages"] == 90 and total[0]["sessions"] == 60:
            break
        assert time.monotonic() < deadline, f"the consumer did not catch up: {total}"
        time.sleep(1)
    (total,) = total
    # 60 sessions; 10 handed off, so 50 contained (nobody came back within 24 h).
    assert total["containment"] == round(50 / 60, 4) and total["handoff_rate"] == round(10 / 60, 4)
    # 90 messages: 40 web, 10 + 10 + 10 WhatsApp, 10 + 10 Telegram; the 10 gibberish ones fell back.
    assert total["fallback_rate"] == round(10 / 90, 4)
    assert total["switches"] == 10 and total["channel_switch_success"] == 1.0 and total["zero_repeat_rate"] == 1.0
    assert total["first_response_ms"] is not None and total["first_response_ms"] > 0
    by_channel = {r["channel"]: r for r in report["totals"]}
    assert by_channel["webchat"]["sessions"] == 20 and by_channel["webchat"]["containment"] == 1.0
    assert by_channel["whatsapp"]["sessions"] == 30 and by_channel["whatsapp"]["handoff_rate"] == round(10 / 30, 4)
    assert by_channel["telegram"]["sessions"] == 10 and by_channel["telegram"]["fallback_rate"] == 0.5
    assert by_channel["telegram"]["switches"] == 10


from tests.e2e.test_handoff_browser import browser  # noqa: E402,F401 (the Chromium fixture)


def test_the_dashboard_shows_the_kpis_draws_the_charts_and_exports_csv(stack, browser):  # noqa: F811
    from tests.support.desk import DeskClient

    base = f"{stack.rasa_url}/webhooks/agent"
    WebChat(stack).say("what are your opening hours?")
    alice = DeskClient(base).sign_in("alice", "alice-token")
    today = now().date().isoformat()
    deadline = time.monotonic() + 60
    while True:  # the consumer folds the message a moment later
        data = alice.get(f"{base}/dashboard/data", params={"start": today, "end": today}, timeout=30).json()
        found = [t for t in data["totals"] if t["channel"] == "all" and t["sessions"]]
        if found:
            break
        assert time.monotonic() < deadline, data
        time.sleep(0.5)
    (total,) = found
    assert total["sessions"] >= 1 and set(kpis.DEFINITIONS) <= set(data["definitions"])
    csv = alice.get(f"{base}/dashboard.csv", params={"start": today, "end": today, "channel": "webchat"}, timeout=30)
    assert csv.headers["content-type"].startswith("text/csv") and "attachment" in csv.headers["content-disposition"]
    lines = csv.text.splitlines()
    assert lines[0].startswith("day,channel,sessions,containment") and all(",webchat," in l for l in lines[1:])

    context = browser.new_context()
    context.add_cookies([{"name": c.name, "value": c.value, "url": stack.rasa_url + "/webhooks/agent/"}
                         for c in alice.cookies])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/dashboard?start={today}&end={today}")
    page.wait_for_selector(".charts[data-drawn='true']", timeout=30000)
    shown = page.locator("#totals tr[data-channel='all'] td[data-kpi='sessions']").inner_text()
    assert int(shown) >= total["sessions"]  # the consumer may have folded more since
    assert page.locator("canvas#chart-rates").is_visible() and not errors
    page.select_option("select[name=channel]", "webchat")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector(".charts[data-drawn='true']", timeout=30000)
    assert "channel=webchat" in page.url
    context.close()
