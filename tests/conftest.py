"""Shared fixtures: private local state, the business DB, and the running stack.

Every test session gets its own var/ directory (embedded Redis, SQLite), so a
developer's running stack is never touched. ``REDIS_URL`` / ``DATABASE_URL``,
when set, point the same tests at real servers.
"""
import os
import socket
import tempfile

import pytest

# Before anything imports threadline: keep test state out of the project's var/.
os.environ.setdefault("THREADLINE_VAR_DIR", tempfile.mkdtemp(prefix="threadline-test-"))
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

from tests.support.recorder import Recorder  # noqa: E402

TEST_SECRETS = {
    "WHATSAPP_VERIFY_TOKEN": "verify-me",
    "WHATSAPP_APP_SECRET": "whatsapp-app-secret",
    "WHATSAPP_ACCESS_TOKEN": "whatsapp-access-token",
    "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
    "TELEGRAM_SECRET_TOKEN": "telegram-secret",
    "WEBCHAT_IDENTITY_SECRET": "webchat-identity-secret",
    "TWILIO_AUTH_TOKEN": "12345",
    "JAMBONZ_WEBHOOK_SECRET": "jambonz-secret",
    "AGENT_TOKENS": "alice:alice-token,bob:bob-token",
    "OUTBOUND_RETRY_BASE_DELAY": "0.05",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def business_db():
    """The business database, fresh engine: SQLite under the test var/, or DATABASE_URL."""
    from threadline.db import ensure_ready, reset_engine

    reset_engine()
    ensure_ready()
    yield
    reset_engine()


@pytest.fixture(scope="session")
def platform_api():
    """The local recorder standing in for Meta's, Telegram's and Twilio's APIs."""
    with Recorder() as recorder:
        yield recorder


@pytest.fixture(scope="session")
def stack(platform_api):
    """The real action server and rasa server with the trained model, every channel on."""
    from threadline.stack import Stack

    env = dict(TEST_SECRETS)
    env.update(
        WHATSAPP_API_BASE=platform_api.url + "/graph",
        TELEGRAM_API_BASE=platform_api.url + "/telegram",
        TWILIO_API_BASE=platform_api.url + "/twilio",
    )
    running = Stack(rasa_port=free_port(), action_port=free_port(), env=env).start()
    running.platform_api = platform_api
    yield running
    running.stop()
