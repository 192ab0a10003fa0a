"""Several writers on one conversation: no event lost, none duplicated."""
import asyncio
import threading

import pytest
import redis

from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.utils.endpoints import EndpointConfig

from threadline.lock_store import RedisTicketLockStore
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


def _texts(tracker):
    return [event.text for event in tracker.events if isinstance(event, (UserUttered, BotUttered))]


def _texts_of(events):
    return [event.text for event in events if isinstance(event, UserUttered)]


@pytest.fixture
def make_store(domain, redis_url, key_prefix):
    clients = []

    def make():
        client = redis.Redis.from_url(redis_url)
        clients.append(client)
        return RedisEventLogTrackerStore(domain, redis=client, key_prefix=key_prefix)

    yield make
    for client in clients:
        client.close()


async def test_two_instances_alternately_saving(make_store):
    first, second = make_store(), make_store()
    await first.get_or_create_tracker("c_alt")
    for i in range(40):
        store = (first, second)[i % 2]
        tracker = await store.retrieve("c_alt")
        tracker.update(UserUttered(f"u{i}"))
        tracker.update(BotUttered(f"b{i}"))
        await store.save(tracker)

    expected = [text for i in range(40) for text in (f"u{i}", f"b{i}")]
    assert _texts(await first.retrieve_full_tracker("c_alt")) == expected
    assert _texts(await second.retrieve("c_alt")) == expected


async def test_stale_trackers_interleaved_in_asyncio(make_store):
    store = make_store()
    await store.get_or_create_tracker("c_async")

    async def writer(name):
        for i in range(15):
            tracker = await store.retrieve("c_async")
            await asyncio.sleep(0)  # let the other writers retrieve the same state
            tracker.update(UserUttered(f"{name}-{i}"))
            await store.save(tracker)

    names = [f"w{n}" for n in range(6)]
    await asyncio.gather(*(writer(name) for name in names))

    texts = _texts(await store.retrieve_full_tracker("c_async"))
    assert sorted(texts) == sorted(f"{name}-{i}" for name in names for i in range(15))
    for name in names:  # each writer's events keep their order
        assert [t for t in texts if t.startswith(name + "-")] == [f"{name}-{i}" for i in range(15)]


async def test_threads_with_own_connections(make_store):
    stores = [make_store() for _ in range(4)]
    await stores[0].get_or_create_tracker("c_threads")
    errors = []

    def writer(index, store):
        async def run():
            for i in range(25):
                tracker = await store.retrieve("c_threads")
                tracker.update(UserUttered(f"t{index}-{i}"))
                tracker.update(ActionExecuted("action_listen"))
                await store.save(tracker)

        try:
            asyncio.run(run())
        except Exception as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    events = (await stores[1].retrieve_full_tracker("c_threads")).events
    texts = _texts_of(events)
    assert len(texts) == len(set(texts)) == 100
    assert len(events) == 1 + 100 * 2


async def test_two_processors_under_the_lock_store(make_store, redis_url, key_prefix):
    """Like two rasa instances: each turn holds the conversation lock while it runs."""
    locks = [
        RedisTicketLockStore(EndpointConfig(url=redis_url, key_prefix=key_prefix)) for _ in range(2)
    ]
    stores = [make_store(), make_store()]

    async def handle_message(instance, text):
        async with locks[instance].lock("c_locked", wait_time_in_seconds=0.005):
            tracker = await stores[instance].get_or_create_tracker("c_locked")
            tracker.update(UserUttered(text))
            await asyncio.sleep(0.001)  # prediction and actions take time
            tracker.update(BotUttered(f"re: {text}"))
            tracker.update(ActionExecuted("action_listen"))
            await stores[instance].save(tracker)

    await asyncio.gather(*(handle_message(i % 2, f"m{i}") for i in range(20)))

    texts = _texts(await stores[0].retrieve_full_tracker("c_locked"))
    assert len(texts) == 40
    # with the lock, every reply directly follows its message
    for user, bot in zip(texts[::2], texts[1::2]):
        assert bot == f"re: {user}"
