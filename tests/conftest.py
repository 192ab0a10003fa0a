"""Shared fixtures: private local state, the business DB, and the running stack.

Every test session gets its own var/ directory (embedded Redis, SQLite), so a
developer's running stack is never touched. ``REDIS_URL`` / ``DATABASE_URL``,
when set, point the same tests at real servers.
"""
import os
import socket
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import sqlalchemy

# Before anything imports threadline: keep test state out of the project's var/.
os.environ.setdefault("THREADLINE_VAR_DIR", tempfile.mkdtemp(prefix="threadline-test-"))
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

REDIS_TEST_DB = 14
_PG_SCHEMA = f"threadline_test_{uuid.uuid4().hex[:12]}"
_EVENT_QUEUE = f"threadline_test_events_{uuid.uuid4().hex[:12]}"


def _isolate_real_servers() -> None:
    """Point REDIS_URL / DATABASE_URL at places only this test session uses.

    Redis: a dedicated database index, emptied first (a CI run's leftovers
    would otherwise look like duplicate deliveries). PostgreSQL: a fresh
    schema, dropped at the end, so runs never see each other's bookings.
    """
    url = os.environ.get("REDIS_URL")
    if url and url.startswith(("redis://", "rediss://")):
        parts = urlsplit(url)
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{REDIS_TEST_DB}"))
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    db_url = os.environ.get("DATABASE_URL")
    if db_url and db_url.startswith("postgres"):
        engine = sqlalchemy.create_engine(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {_PG_SCHEMA}")
        engine.dispose()
        os.environ["THREADLINE_PG_BASE_URL"] = db_url
        separator = "&" if "?" in db_url else "?"
        os.environ["DATABASE_URL"] = f"{db_url}{separator}options=-csearch_path%3D{_PG_SCHEMA}"
    if os.environ.get("RABBITMQ_URL"):
        # The stacks' event relays publish to a queue of this session's own, deleted at the end.
        os.environ["EVENT_QUEUE"] = _EVENT_QUEUE


def _delete_event_queue() -> None:
    import asyncio

    import aio_pika

    async def delete() -> None:
        connection = await aio_pika.connect(os.environ["RABBITMQ_URL"], timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(_EVENT_QUEUE)

    try:
        asyncio.run(delete())
    except Exception:  # RabbitMQ gone by now: nothing to tidy
        pass


def _stop_session_redis() -> None:
    """Stop the embedded redis-server of this session's private var/ directory (never a real one)."""
    if os.environ.get("REDIS_URL") or "threadline-test-" not in os.environ.get("THREADLINE_VAR_DIR", ""):
        return
    try:
        from threadline import redis_client

        redis_client.stop_embedded()
    except Exception:  # already gone: nothing to tidy
        pass


def pytest_sessionfinish(session, exitstatus):
    """Drop this session's PostgreSQL schema and RabbitMQ queue; stop its embedded Redis."""
    _stop_session_redis()
    if os.environ.get("RABBITMQ_URL"):
        _delete_event_queue()
    base = os.environ.get("THREADLINE_PG_BASE_URL")
    if base:
        from threadline.db import reset_engine

        reset_engine()
        engine = sqlalchemy.create_engine(base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_PG_SCHEMA} CASCADE")
        engine.dispose()


_isolate_real_servers()

from tests.support.recorder import Recorder  # noqa: E402
from threadline import settings as _settings  # noqa: E402

_settings.reload()


class _SettingsMonkeyPatch(pytest.MonkeyPatch):
    """``monkeypatch`` that takes a new settings snapshot whenever it changes the environment."""

    def setenv(self, *args, **kwargs):
        super().setenv(*args, **kwargs)
        _settings.reload()

    def delenv(self, *args, **kwargs):
        super().delenv(*args, **kwargs)
        _settings.reload()

    def undo(self):
        super().undo()
        _settings.reload()


@pytest.fixture
def monkeypatch():
    """Pytest's monkeypatch, keeping ``threadline.settings`` in step with the environment."""
    patch = _SettingsMonkeyPatch()
    yield patch
    patch.undo()

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
    "VOICE_TRANSFER_TO": "+15550100999",
    "RASA_AUTH_TOKEN": "rasa-api-token-for-tests",
    # Test stacks share one database: only tests/e2e/test_journeys.py's stack runs a journey worker.
    "JOURNEY_WORKER": "off",
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


@pytest.fixture(scope="session")
def parse():
    """``parse(text)``: the trained model's NLU reading of a text (Rasa's parse data), one agent per run."""
    import asyncio
    from pathlib import Path

    model = Path(__file__).resolve().parent.parent / "models" / "threadline.tar.gz"
    if not model.exists():
        pytest.skip("no trained model (make train)")
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    loop = asyncio.new_event_loop()
    yield lambda text: loop.run_until_complete(agent.parse_message(text))
    loop.close()
