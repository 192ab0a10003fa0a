"""The event outbox and relay: every stored event reaches the broker, in order, through broker failures.

Real Redis, the real tracker store, Rasa's real ``SQLEventBroker`` on SQLite
(and on RabbitMQ, in tests/threadline/test_event_relay_rabbitmq.py).
"""
import asyncio
import json

import pytest
import sqlalchemy

from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from threadline.event_relay import EventRelay, SqlPublisher, outbox_event
from threadline.keys import Keys
from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


@pytest.fixture
def store(domain, redis_conn, key_prefix):
    return RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)


@pytest.fixture
def sql(tmp_path):
    publisher = SqlPublisher(f"sqlite:///{tmp_path / 'events.db'}")
    yield publisher
    publisher.broker.engine.dispose()


def broker_rows(publisher: SqlPublisher):
    with publisher.broker.engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT sender_id, data FROM events ORDER BY id")).fetchall()
    return [(sender, json.loads(data)) for sender, data in rows]


def turn(tracker: DialogueStateTracker, n: int) -> None:
    tracker.update(UserUttered(f"message {n}", {"name": "greet"}, timestamp=n * 10 + 1))
    tracker.update(BotUttered(f"reply {n}", timestamp=n * 10 + 2))
    tracker.update(ActionExecuted(ACTION_LISTEN_NAME, timestamp=n * 10 + 3))


async def eventually(condition, seconds: float = 10) -> None:
    """Wait until ``condition()`` holds, for at most ``seconds`` (the assertion after it says what failed)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def outbox(redis_conn, key_prefix):
    return redis_conn.xrange(Keys(key_prefix).event_outbox())


async def test_each_stored_event_enters_the_outbox_once_with_the_log(store, redis_conn, key_prefix):
    tracker = DialogueStateTracker("customer-a", store.domain.slots)
    turn(tracker, 1)
    await store.save(tracker)
    await store.save(tracker)  # saved again: nothing new
    retrieved = await store.retrieve("customer-a")
    turn(retrieved, 2)
    await store.save(retrieved)
    entries = [outbox_event(fields) for _, fields in outbox(redis_conn, key_prefix)]
    stored = [json.loads(raw) for raw in redis_conn.lrange(Keys(key_prefix).tracker("ev", "customer-a"), 0, -1)]
    assert [{k: v for k, v in e.items() if k not in ("sender_id", "event_id")} for e in entries] == stored
    assert {e["sender_id"] for e in entries} == {"customer-a"}
    assert len({e["event_id"] for e in entries}) == len(entries) == 6


async def test_no_outbox_when_the_event_stream_is_off(domain, redis_conn, key_prefix, monkeypatch):
    monkeypatch.setenv("EVENT_STREAM", "off")
    store = RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)
    tracker = DialogueStateTracker("customer-b", domain.slots)
    turn(tracker, 1)
    await store.save(tracker)
    assert outbox(redis_conn, key_prefix) == []
    assert redis_conn.llen(Keys(key_prefix).tracker("ev", "customer-b")) == 3


async def test_the_relay_moves_the_outbox_to_rasas_sql_broker_in_order(store, redis_conn, key_prefix, sql):
    for customer in ("c1", "c2"):
        tracker = DialogueStateTracker(customer, store.domain.slots)
        for n in range(3):
            turn(tracker, n)
            await store.save(tracker)
    relay = EventRelay(sql, redis=redis_conn, keys=Keys(key_prefix), batch=4)
    while await relay.relay_once():
        pass
    rows = broker_rows(sql)
    assert outbox(redis_conn, key_prefix) == []
    assert relay.relayed == len(rows) == 18
    for customer in ("c1", "c2"):
        texts = [e.get("text") for sender, e in rows if sender == customer and e["event"] == "user"]
        assert texts == ["message 0", "message 1", "message 2"]


class Flaky:
    """The SQL broker, unreachable for the first ``failures`` publishes (the broker restarting)."""

    def __init__(self, inner, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    async def publish(self, events):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("broker restarting")
        await self.inner.publish(events)

    async def close(self):
        pass


async def test_a_broker_that_is_down_delays_events_and_loses_none(store, redis_conn, key_prefix, sql):
    tracker = DialogueStateTracker("c3", store.domain.slots)
    turn(tracker, 1)
    await store.save(tracker)
    relay = EventRelay(Flaky(sql, failures=3), redis=redis_conn, keys=Keys(key_prefix))
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    for n in range(2, 5):  # the conversation goes on while the broker is away
        turn(tracker, n)
        await store.save(tracker)
    await eventually(lambda: relay.relayed >= 12)
    stop.set()
    await running
    rows = broker_rows(sql)
    assert len(rows) == 12 and outbox(redis_conn, key_prefix) == []
    assert [e["text"] for _, e in rows if e["event"] == "user"] == [f"message {n}" for n in range(1, 5)]
    assert not redis_conn.exists(Keys(key_prefix).event_relay_lease())  # given up on stop


async def test_one_relay_at_a_time_and_the_next_takes_over_when_it_dies(store, redis_conn, key_prefix, sql):
    keys = Keys(key_prefix)
    first = EventRelay(sql, redis=redis_conn, keys=keys, lease_ms=300)
    second = EventRelay(sql, redis=redis_conn, keys=keys, lease_ms=300)
    tracker = DialogueStateTracker("c4", store.domain.slots)
    turn(tracker, 1)
    await store.save(tracker)
    assert await first.relay_once() == 3
    turn(tracker, 2)
    await store.save(tracker)
    assert await second.relay_once() == 0  # the first holds the lease
    await asyncio.sleep(0.4)  # the first died without giving it up: the lease runs out
    assert await second.relay_once() == 3
    assert len(broker_rows(sql)) == 6
