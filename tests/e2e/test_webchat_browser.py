"""The web chat in a real browser (headless Debian chromium through Playwright).

``test_chat_page_tracks_an_order`` talks to the real stack and trained model on the
chat page. ``test_widget_embedded_on_another_site`` embeds the widget with one
<script> tag on a page from another origin, served by Rasa's own app with a
scripted bot, to check rendering (escaping, buttons, deep links), signed
identities and live messages. Screenshots go to tests/artifacts/ (git-ignored).
"""
import asyncio
import contextlib
import shutil
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.services]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SECRET = "webchat-identity-secret"


def chromium_path():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless chromium; the test is skipped (with the reason) when it is missing."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium found: `apt-get install -y chromium` (make installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page_errors():
    return []


def new_page(browser, errors, **options):
    page = browser.new_page(**options)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    return page


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


# ------------------------------------------------------------------ the real bot


def test_chat_page_tracks_an_order(stack, browser, page_errors):
    page = new_page(browser, page_errors, viewport={"width": 1280, "height": 800})
    page.goto(f"{stack.rasa_url}/webhooks/webchat/chat")
    composer = page.get_by_role("textbox", name="Message")
    composer.fill("hi")
    composer.press("Enter")

    track = page.get_by_role("button", name="Track an order")
    track.wait_for()
    assert page.get_by_role("button", name="Book an appointment").is_visible()
    assert page.locator(".tl-bot .tl-bubble").first.inner_text().startswith("Hi, I'm Threadline's assistant")
    track.click()
    page.locator(".tl-user .tl-bubble", has_text="Track an order").wait_for()
    page.get_by_text("What's your order number?").wait_for()
    assert track.is_disabled()  # answered choices can't be clicked again

    composer.fill("482913")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".tl-bot .tl-bubble", has_text="Order 482913 is on its way")
    answer.wait_for()
    assert answer.locator("strong").inner_text() == "on its way"  # **markdown** rendered
    screenshot(page, "webchat-desktop.png")

    page.get_by_role("button", name="Continue on WhatsApp / Telegram").click()
    page.get_by_text("send this message there within 10 minutes: LINK").wait_for()

    # The visitor and the conversation survive a reload.
    visitor = page.evaluate("ThreadlineChat.visitorId()")
    page.reload()
    page.locator(".tl-bot .tl-bubble", has_text="Order 482913 is on its way").wait_for()
    assert page.evaluate("ThreadlineChat.visitorId()") == visitor

    mobile = new_page(browser, page_errors, viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
    mobile.goto(f"{stack.rasa_url}/webhooks/webchat/chat")
    mobile.get_by_role("textbox", name="Message").fill("hi")
    mobile.get_by_role("textbox", name="Message").press("Enter")
    mobile.get_by_role("button", name="Track an order").wait_for()
    screenshot(mobile, "webchat-mobile.png")
    assert page_errors == []


# ------------------------------------------------------- embedded, scripted bot


def scripted_bot(message):
    """Replies that exercise the widget's rendering."""
    text = message.text or ""
    if text == "markup please":
        return [{"text": (
            '<img src=x onerror="window.__pwned = 1"> **bold** and _soft_ words, snake_case_name, '
            "[our site](https://example.com/help) [bad](javascript:window.__pwned=1) "
            "and https://example.com/faq."
        )}]
    if text == "menu":
        return [{"text": "Pick one", "buttons": [
            {"title": "Track an order", "payload": "/check_order"},
            {"title": "Opening hours", "url": "https://example.com/hours", "type": "web_url"},
        ]}, {"image": "data:image/png;base64,iVBORw0KGgo="}]
    if text == "/link_channel":
        return [{"text": "To continue on another app, send this message there within 10 minutes: LINK 123456"}]
    return [{"text": f"You said: {text}"}]


@contextlib.contextmanager
def serve_directory(directory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def scripted_server(monkeypatch, tmp_path, origin):
    """Rasa's app with the web chat and the scripted bot; CORS allows ``origin`` only, as `make run` would."""
    from rasa.core.run import configure_app
    from sanic import Sanic

    from connectors.webchat import WebchatInput
    from tests.connectors.harness import EchoAgent, ServerThread
    from threadline import redis_client, settings

    monkeypatch.setenv("THREADLINE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", "tlbrowser" + uuid.uuid4().hex[:8])
    monkeypatch.setenv("WEBCHAT_IDENTITY_SECRET", SECRET)
    monkeypatch.setenv("WEBCHAT_TELEGRAM_BOT", "ThreadlineBot")
    monkeypatch.setenv("WEBCHAT_WHATSAPP_NUMBER", "+1 415 555 0100")
    monkeypatch.setenv("THREADLINE_CORS_ORIGINS", origin)
    (tmp_path / "var").mkdir(exist_ok=True)
    Sanic.test_mode = True
    channel = WebchatInput.from_credentials({"identity_secret_env": "WEBCHAT_IDENTITY_SECRET"})
    app = configure_app([channel], cors=settings.get().cors_origins, enable_api=False)
    app.ctx.agent = EchoAgent(scripted_bot)
    server = ServerThread(app).start()
    try:
        yield server, channel
    finally:
        server.stop()
        redis_client.stop_embedded()


def host_page(directory, widget_url, ref, signature, expires):
    (directory / "index.html").write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Acme</title>
<style>body {{ font: 18px Georgia, serif; color: #333; }} button {{ color: red; }}</style></head>
<body><h1>Acme Store</h1><p>Your account.</p>
<script src="{widget_url}" data-customer-ref="{ref}" data-signature="{signature}"
        data-signature-expires="{expires}" defer></script>
</body></html>""")


def test_widget_embedded_on_another_site(monkeypatch, browser, page_errors, tmp_path):
    import time

    from threadline import identity

    site = tmp_path / "site"
    site.mkdir()
    with serve_directory(site) as origin, scripted_server(monkeypatch, tmp_path, origin) as (server, channel):
        expires = int(time.time()) + 3600
        signature = identity.sign_web_identity("cust-42", SECRET, expires)
        host_page(site, f"{server.url}/webhooks/webchat/widget.js", "cust-42", signature, expires)
        page = new_page(browser, page_errors, viewport={"width": 1280, "height": 800})
        page.goto(origin + "/index.html")
        launcher = page.get_by_role("button", name="Open chat")
        launcher.click()
        composer = page.get_by_role("textbox", name="Message")

        # Bot text is rendered as text: no HTML, no script URLs; light markdown only.
        composer.fill("markup please")
        composer.press("Enter")
        bubble = page.locator(".tl-bot .tl-bubble").last
        bubble.locator("strong", has_text="bold").wait_for()
        assert bubble.locator("img").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert "<img src=x" in bubble.inner_text()
        assert bubble.locator("em").all_inner_texts() == ["soft"]
        assert "snake_case_name" in bubble.inner_text()
        hrefs = bubble.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert hrefs == ["https://example.com/help", "https://example.com/faq"]

        # Buttons: a URL button is a link; clicking a choice sends its payload, shows its title.
        composer.fill("menu")
        composer.press("Enter")
        page.get_by_role("link", name="Opening hours").wait_for()
        page.get_by_role("button", name="Track an order").click()
        page.get_by_text("You said: /check_order").wait_for()
        assert server.app.ctx.agent.messages[-1].metadata["kind"] == "button"

        # The signed identity from the script tag made this visitor verified.
        assert server.app.ctx.agent.messages[-1].metadata["trust"] == "verified"

        # "Continue on another app": the code with deep links to both apps.
        page.get_by_role("button", name="Continue on WhatsApp / Telegram").click()
        telegram = page.get_by_role("link", name="Open Telegram")
        telegram.wait_for()
        assert telegram.get_attribute("href") == "https://t.me/ThreadlineBot?start=123456"
        whatsapp = page.get_by_role("link", name="Open WhatsApp")
        assert whatsapp.get_attribute("href") == "https://wa.me/14155550100?text=LINK%20123456"
        screenshot(page, "webchat-embedded.png")

        # A message the bot sends on its own arrives live, with an unread badge when closed.
        page.get_by_role("button", name="Close chat").first.click()
        customer = server.app.ctx.agent.messages[-1].sender_id
        push = channel.get_output_channel().send_text_message(customer, "An agent has joined.")
        asyncio.run_coroutine_threadsafe(push, server._loop).result(10)
        page.locator(".tl-badge", has_text="1").wait_for()
        page.get_by_role("button", name="Open chat").click()
        page.get_by_text("An agent has joined.").wait_for()

        # Logging out (reset) starts a new anonymous conversation.
        before = page.evaluate("ThreadlineChat.visitorId()")
        assert before and len(before) == 32
        page.evaluate("ThreadlineChat.reset()")
        assert page.evaluate("ThreadlineChat.visitorId()") != before
        assert page.locator(".tl-msg").count() == 0
    assert page_errors == []
