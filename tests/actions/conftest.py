"""Fixtures for the action tests: a real Redis (step-up state) under a per-test key prefix."""
import uuid

import pytest


@pytest.fixture(autouse=True)
def key_prefix(monkeypatch):
    """A unique THREADLINE_KEY_PREFIX per test; its Redis keys are deleted afterwards."""
    prefix = "tlact" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("THREADLINE_KEY_PREFIX", prefix)
    yield prefix
    from threadline.redis_client import get_client

    client = get_client()
    keys = list(client.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        client.delete(*keys)
