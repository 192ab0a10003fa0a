"""Fixtures for the connector tests.

Redis: whatever tests/conftest.py set up (a test database of ``REDIS_URL``, or
an embedded redis-server under a per-session ``THREADLINE_VAR_DIR``). Every test
gets its own ``THREADLINE_KEY_PREFIX`` and only its own keys are deleted
afterwards, so the connector tests never flush anything.
"""
import os
import uuid

import pytest

from tests.support.recorder import Recorder
from threadline import settings


def pytest_configure(config):
    config.addinivalue_line("markers", "services: needs Redis (REDIS_URL or the embedded server)")


@pytest.fixture(scope="session", autouse=True)
def _connector_env(tmp_path_factory):
    """Fast retries and an isolated Redis for the connector tests."""
    changes = {"OUTBOUND_RETRY_BASE_DELAY": "0.01", "OUTBOUND_TIMEOUT": "5"}
    own_redis = not os.environ.get("REDIS_URL") and not os.environ.get("THREADLINE_VAR_DIR")
    if own_redis:  # tests/conftest.py normally provides a private var/ already
        changes["THREADLINE_VAR_DIR"] = str(tmp_path_factory.mktemp("threadline-var"))
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    settings.reload()
    yield
    if own_redis:
        from threadline import redis_client

        redis_client.stop_embedded()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    settings.reload()


@pytest.fixture
def key_prefix(monkeypatch):
    """A unique THREADLINE_KEY_PREFIX for one test; its keys are deleted afterwards."""
    prefix = "tltest" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", prefix)
    yield prefix
    from threadline.redis_client import get_client

    client = get_client()
    keys = list(client.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis(key_prefix):
    """The Redis client the connectors use, with a per-test key prefix."""
    from threadline.redis_client import get_client

    return get_client()


@pytest.fixture
def recorder():
    """A running platform API stand-in."""
    with Recorder() as api:
        yield api
