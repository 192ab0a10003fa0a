"""RedisUrlLockStore: Rasa's Redis lock store reached through a URL."""
import asyncio

import pytest

from rasa.core.lock_store import LockStore
from rasa.utils.endpoints import EndpointConfig

from threadline.lock_store import RedisUrlLockStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


@pytest.fixture
def lock_store(redis_url, key_prefix):
    return LockStore.create(
        EndpointConfig(url=redis_url, type="threadline.lock_store.RedisUrlLockStore", key_prefix=key_prefix)
    )


async def test_created_from_endpoint_config(lock_store, key_prefix):
    assert isinstance(lock_store, RedisUrlLockStore)
    assert lock_store.key_prefix == f"{key_prefix}:lock:"


async def test_issue_ticket_and_lock(lock_store, redis_conn, key_prefix):
    assert lock_store.issue_ticket("c_1") == 0
    assert lock_store.issue_ticket("c_1") == 1
    assert redis_conn.exists(f"{key_prefix}:lock:c_1")
    lock_store.delete_lock("c_1")

    async with lock_store.lock("c_2"):
        waiting = lock_store.issue_ticket("c_2")
        assert lock_store.get_lock("c_2").is_locked(waiting)
        assert lock_store.is_someone_waiting("c_2")
    lock_store.cleanup("c_2", waiting)
    assert lock_store.get_lock("c_2") is None


async def test_lock_serialises_concurrent_turns(lock_store):
    order = []

    async def turn(name):
        async with lock_store.lock("c_3", wait_time_in_seconds=0.01):
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    await asyncio.gather(turn("a"), turn("b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
