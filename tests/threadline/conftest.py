"""Fixtures for the threadline runtime tests: a real Redis and per-test key prefixes.

Without ``REDIS_URL`` the tests start their own embedded redis-server under a
temporary var/ directory, so they never touch a running dev stack. With
``REDIS_URL`` they use that server's db 15 and delete only their own keys.
"""
import os
import uuid
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis

from rasa.shared.core.domain import Domain

from threadline import redis_client, settings

TEST_DB = 15


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def _var_dir(path: str):
    old = os.environ.get("THREADLINE_VAR_DIR")
    os.environ["THREADLINE_VAR_DIR"] = path
    settings.reload()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("THREADLINE_VAR_DIR", None)
        else:
            os.environ["THREADLINE_VAR_DIR"] = old
        settings.reload()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of the Redis the tests use (db 15 of REDIS_URL, or a private embedded server)."""
    if os.environ.get("REDIS_URL"):
        yield _with_db(os.environ["REDIS_URL"], TEST_DB)
        return
    var = str(tmp_path_factory.mktemp("threadline-var"))
    with _var_dir(var):
        url = redis_client.embedded_url()
    yield url
    with _var_dir(var):
        redis_client.stop_embedded()


@pytest.fixture(scope="session")
def redis_conn(redis_url):
    """A client (bytes responses) to the test Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_conn, monkeypatch):
    """A unique alphanumeric key prefix; the test's keys are deleted afterwards.

    Also set as THREADLINE_KEY_PREFIX, the prefix of the identity index.
    """
    prefix = "tltest" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", prefix)
    yield prefix
    keys = list(redis_conn.scan_iter(match=prefix + "*", count=1000))
    if keys:
        redis_conn.delete(*keys)


@pytest.fixture(scope="session")
def domain():
    """A small domain with the slots the tests set."""
    return Domain.from_dict(
        {
            "version": "3.1",
            "intents": ["greet", "order_status", "goodbye"],
            "slots": {
                name: {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]}
                for name in ("order_id", "customer_name", "identity_merged_from")
            },
            "responses": {"utter_greet": [{"text": "Hi"}]},
        }
    )
