"""The relay on RabbitMQ (``RABBITMQ_URL``): broker events equal tracker events across a broker outage.

Rasa's ``PikaEventBroker`` through a proxy the test cuts mid-conversation (the
broker going away, as the relay sees it) and restores; every stored event
then reaches the durable queue, in order, exactly once after dropping the
copies a crash between confirm and delete may leave (``event_id``).
"""
import asyncio
import json
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from rasa.shared.core.trackers import DialogueStateTracker

from tests.support.tcp_proxy import CuttableProxy
from tests.threadline.test_event_relay import eventually, turn
from threadline.event_relay import EventRelay, PikaPublisher
from threadline.keys import Keys
from threadline.tracker_store import RedisEventLogTrackerStore

RABBITMQ_URL = os.environ.get("RABBITMQ_URL")
pytestmark = [
    pytest.mark.services, pytest.mark.asyncio,
    pytest.mark.skipif(not RABBITMQ_URL, reason="RABBITMQ_URL is not set (the services pass sets it)"),
]


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def drain(queue_name: str, expected: int, timeout: float = 60):
    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        got = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            got.append(json.loads(message.body))
        await queue.delete(if_unused=False, if_empty=False)
        return got
    finally:
        await connection.close()


async def test_broker_events_equal_tracker_events_after_the_broker_goes_away(domain, redis_conn, key_prefix):
    store = RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)
    target = urlsplit(RABBITMQ_URL)
    proxy = await CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672).start()
    queue_name = f"threadline_test_{uuid.uuid4().hex[:8]}"
    publisher = PikaPublisher(through(RABBITMQ_URL, proxy.port), queue_name)
    relay = EventRelay(publisher, redis=redis_conn, keys=Keys(key_prefix))
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    tracker = DialogueStateTracker("rabbit-customer", domain.slots)
    try:
        for n in range(3):
            turn(tracker, n)
            await store.save(tracker)
        await eventually(lambda: relay.relayed >= 9)
        assert relay.relayed == 9
        await proxy.cut()  # the broker is gone; the conversation goes on
        for n in range(3, 6):
            turn(tracker, n)
            await store.save(tracker)
        await asyncio.sleep(1)
        assert len(redis_conn.xrange(Keys(key_prefix).event_outbox())) == 9  # waiting, not lost
        await proxy.start()
        await eventually(lambda: not redis_conn.xrange(Keys(key_prefix).event_outbox()), seconds=60)
        assert not redis_conn.xrange(Keys(key_prefix).event_outbox())
    finally:
        stop.set()
        await running
        await publisher.close()
        await proxy.cut()
    received = await drain(queue_name, expected=18)
    unique = list({event["event_id"]: event for event in received}.values())
    stored = [json.loads(raw) for raw in redis_conn.lrange(Keys(key_prefix).tracker("ev", "rabbit-customer"), 0, -1)]
    assert [{k: v for k, v in e.items() if k not in ("sender_id", "event_id")} for e in unique] == stored
