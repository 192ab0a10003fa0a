"""A conversation store that is down fails the turn, instead of Rasa's silent in-memory fallback.

Rasa's ``FailSafeTrackerStore`` saves into one process's memory when the
real store fails, and the platform is then told the message was handled: the
load test lost a message that way across a Redis restart. For Threadline's
store the error must reach the connector (which answers non-200, so the
platform sends the message again); other stores keep Rasa's behaviour.
"""
import pytest
import redis

from rasa.core.tracker_store import FailSafeTrackerStore, InMemoryTrackerStore
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from tests.conftest import free_port
from threadline import rasa_patches
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = pytest.mark.asyncio


@pytest.fixture
def unreachable(domain):
    rasa_patches.install()
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    return FailSafeTrackerStore(RedisEventLogTrackerStore(domain, redis=client, key_prefix="down"))


async def test_a_failed_save_fails_the_turn_and_keeps_nothing_in_memory(unreachable, domain):
    tracker = DialogueStateTracker("customer-x", domain.slots)
    tracker.update(UserUttered("where is my order", {"name": "greet"}))
    with pytest.raises(redis.ConnectionError):
        await unreachable.save(tracker)
    assert unreachable._fallback_tracker_store is None  # nothing went to a process's memory


async def test_a_failed_retrieve_fails_the_turn_instead_of_starting_afresh(unreachable):
    with pytest.raises(redis.ConnectionError):
        await unreachable.retrieve("customer-x")
    with pytest.raises(redis.ConnectionError):
        await unreachable.retrieve_full_tracker("customer-x")


class Broken(InMemoryTrackerStore):
    async def save(self, tracker):
        raise RuntimeError("down")

    async def retrieve(self, sender_id):
        raise RuntimeError("down")


async def test_other_stores_keep_rasas_fallback(domain):
    rasa_patches.install()
    store = FailSafeTrackerStore(Broken(domain))
    tracker = DialogueStateTracker("customer-y", domain.slots)
    await store.save(tracker)  # Rasa's behaviour: into the in-memory fallback
    assert await store.fallback_tracker_store.retrieve("customer-y") is not None
    assert await store.retrieve("customer-y") is None
