"""Conversation events to the event broker, none lost: ``python -m threadline.event_relay``.

Rasa's tracker stores hand new events to the event broker as they save
(``stream_events``), and its ``PikaEventBroker`` keeps what it could not send
in process memory: a broker restart, or a rasa process that dies, loses
events. Threadline's tracker store instead appends every new event to a Redis
stream, the outbox (``{p}:events:outbox``), in the same Lua script that
appends it to the conversation's log: an event is in the outbox exactly when
it is stored. This relay moves the outbox to the broker:

* one relay at a time holds a lease (``{p}:events:relay``), so events leave
  in the order they were stored, whatever the number of replicas running one;
* each batch is published with the broker's confirmation (RabbitMQ publisher
  confirms; a committed transaction for SQL) before it is deleted from the
  outbox, so a broker that is down or restarting delays events, never loses
  them; a relay that dies between the two sends a batch twice at most, and
  each event carries ``event_id`` (conversation id and digest) for consumers
  to drop the copy;
* Redis or the broker going away is retried with backoff, forever.

The broker is Rasa's own: ``PikaEventBroker`` (fanout exchange
``rasa-exchange``, durable queue ``EVENT_QUEUE``) when ``RABBITMQ_URL`` is
set, else ``SQLEventBroker`` writing to the ``events`` table of the business
database. Events are the JSON Rasa's brokers publish (``sender_id`` added).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import uuid
from typing import Any, Dict, List, Optional, Protocol, Tuple

import ujson

from threadline import redis_client
from threadline import settings as settings_module
from threadline.keys import Keys
from threadline.leases import LEASE_LUA, RELEASE_LUA

logger = logging.getLogger(__name__)

LEASE_MS = 30_000
BATCH = 200
PUBLISH_TIMEOUT_SECONDS = 10.0
IDLE_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0



class Publisher(Protocol):
    """Where the relay sends events; ``publish`` returns only once the broker has them."""

    async def publish(self, events: List[Dict[str, Any]]) -> None:
        """Send ``events`` in order; raise if the broker did not confirm all of them."""

    async def close(self) -> None:
        """Release the connection."""


def outbox_event(fields: Dict[bytes, bytes]) -> Dict[str, Any]:
    """The broker message for one outbox entry: Rasa's event JSON with ``sender_id`` and ``event_id``."""
    sender = fields[b"s"].decode()
    event = ujson.loads(fields[b"e"])
    event["sender_id"] = sender
    event["event_id"] = f"{sender}:{fields[b'd'].decode()}"
    return event


class EventRelay:
    """Moves the outbox to a publisher while it holds the lease."""

    def __init__(self, publisher: Publisher, redis: Any = None, keys: Optional[Keys] = None,
                 batch: int = BATCH, lease_ms: int = LEASE_MS) -> None:
        self.publisher = publisher
        self._redis = redis
        self.keys = keys or Keys()
        self.batch = batch
        self.lease_ms = lease_ms
        self.owner = uuid.uuid4().hex
        self.relayed = 0

    @property
    def redis(self) -> Any:
        return self._redis or redis_client.get_client()

    def _lease(self) -> bool:
        return bool(self.redis.eval(LEASE_LUA, 1, self.keys.event_relay_lease(), self.owner, self.lease_ms))

    def release(self) -> None:
        """Give the lease to the next relay (blocking)."""
        self.redis.eval(RELEASE_LUA, 1, self.keys.event_relay_lease(), self.owner)

    def _pending(self) -> List[Tuple[bytes, Dict[bytes, bytes]]]:
        return self.redis.xrange(self.keys.event_outbox(), "-", "+", count=self.batch)

    async def relay_once(self) -> int:
        """Relay one batch if this relay holds the lease; the number of events relayed."""
        if not await asyncio.to_thread(self._lease):
            return 0
        entries = await asyncio.to_thread(self._pending)
        if not entries:
            return 0
        events = [outbox_event(fields) for _, fields in entries]
        await asyncio.wait_for(self.publisher.publish(events), PUBLISH_TIMEOUT_SECONDS)
        await asyncio.to_thread(self.redis.xdel, self.keys.event_outbox(), *[entry_id for entry_id, _ in entries])
        self.relayed += len(entries)
        return len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, retrying Redis and broker failures with backoff."""
        backoff = 0.5
        while not stop.is_set():
            try:
                moved = await self.relay_once()
                backoff = 0.5
            except Exception as error:  # broker or Redis away: the events wait in the outbox
                logger.warning("event relay: %s; retrying in %.1f s", error or type(error).__name__, backoff)
                moved = 0
                await _sleep_or_stop(stop, backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            if moved < self.batch:
                await _sleep_or_stop(stop, IDLE_SECONDS)
        try:
            await asyncio.to_thread(self.release)
        except Exception:
            pass  # Redis is gone: the lease expires by itself


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


class SqlPublisher:
    """Rasa's ``SQLEventBroker`` on the business database, one transaction per batch."""

    def __init__(self, database_url: str) -> None:
        from rasa.core.brokers.sql import SQLEventBroker

        self.broker = SQLEventBroker(host=database_url)  # Rasa takes a whole URL as the host

    def _write(self, events: List[Dict[str, Any]]) -> None:
        # One multi-row INSERT of Rasa's table, not an ORM object per event (a third of the relay's CPU).
        rows = [{"sender_id": e.get("sender_id"), "data": ujson.dumps(e, escape_forward_slashes=False)}
                for e in events]
        with self.broker.session_scope() as session:
            session.execute(self.broker.SQLBrokerEvent.__table__.insert(), rows)
            session.commit()

    async def publish(self, events: List[Dict[str, Any]]) -> None:
        await asyncio.to_thread(self._write, events)

    async def close(self) -> None:
        self.broker.engine.dispose()


class PikaPublisher:
    """Rasa's ``PikaEventBroker`` (its connection, exchange, queue and message format), confirmed.

    Rasa's ``publish`` fires and forgets and keeps unsent events in memory;
    here each message is awaited until RabbitMQ confirms it (aio-pika
    channels confirm publishes), so the relay deletes only what the broker has.
    """

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.broker: Any = None

    async def _connected(self) -> Any:
        if self.broker is None:
            from urllib.parse import unquote, urlsplit

            from rasa.core.brokers.pika import PikaEventBroker

            parts = urlsplit(self.url)
            broker = PikaEventBroker(
                self.url, unquote(parts.username or "guest"), unquote(parts.password or "guest"),
                port=parts.port or 5672, queues=[self.queue], connection_attempts=1,
                retry_delay_in_seconds=1, event_loop=asyncio.get_running_loop(),
            )
            await broker.connect()
            self.broker = broker
        return self.broker

    async def publish(self, events: List[Dict[str, Any]]) -> None:
        broker = await self._connected()
        if broker._exchange is None or not broker.is_ready():
            raise ConnectionError("RabbitMQ is not connected")
        for event in events:
            await broker._exchange.publish(broker._message(event, {"event_id": event["event_id"]}), "")

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.close()


def publisher_for(config: settings_module.Settings) -> Publisher:
    """RabbitMQ when ``RABBITMQ_URL`` is set, else the business database."""
    rabbit = config.get("RABBITMQ_URL")
    if rabbit:
        return PikaPublisher(rabbit, config.get("EVENT_QUEUE"))
    return SqlPublisher(config.database_url)


async def _main_async() -> int:
    config = settings_module.get()
    publisher = publisher_for(config)
    relay = EventRelay(publisher)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    target = "RabbitMQ" if config.get("RABBITMQ_URL") else "the business database"
    logger.info("event relay: outbox -> %s", target)
    print(f"event relay: conversation events -> {target}", flush=True)
    try:
        await relay.run(stop)
    finally:
        await publisher.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: relay until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m threadline.event_relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main_async())


if __name__ == "__main__":
    sys.exit(main())
