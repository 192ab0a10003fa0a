"""The analytics consumer: broker events -> analytics tables, each event counted once, catching up after a stop.

Sources, matching where the event relay (``threadline.event_relay``)
publishes:

* **SQL** (default): Rasa's ``SQLEventBroker`` table ``events`` in the
  business database, read in ``id`` order from the consumer's checkpoint.
  The checkpoint advances in the same transaction as the tables it fed, so a
  consumer stopped anywhere resumes exactly where its last commit left it.
* **RabbitMQ** (``RABBITMQ_URL``): the durable queue ``EVENT_QUEUE``;
  messages are acknowledged only after their batch is committed, so a crash
  redelivers them.

Either way each event carries ``event_id``; ``analytics_seen`` holds those
counted, in the same transaction, so an event delivered twice (the relay
re-publishing after a crash, RabbitMQ redelivering) counts once.

    python -m threadline.analytics.consumer            # run until stopped (make run starts it)
    python -m threadline.analytics.consumer --once     # catch up, then exit
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

import ujson
from sqlalchemy import select

from threadline import settings as settings_module
from threadline.analytics.fold import Folder
from threadline.db.models import AnalyticsCheckpoint, AnalyticsSeen
from threadline.db.session import session_scope
from threadline.keys import Keys
from threadline.leases import Lease

logger = logging.getLogger(__name__)

BATCH = 500
LEASE_MS = 30_000
IDLE_SECONDS = 1.0
SQL_SOURCE = "sql:events"


@functools.lru_cache(maxsize=1)
def asked_slots() -> List[str]:
    """The slots the bot asks customers for: every form's required slots (from domain.yml)."""
    from threadline.journeys.definitions import load_domain

    domain = load_domain() or {}
    asked = set()
    for form in (domain.get("forms") or {}).values():
        asked.update((form or {}).get("required_slots") or [])
    return sorted(asked)


def apply_batch(events: Iterable[Tuple[str, Dict[str, Any]]], checkpoint: Optional[Tuple[str, int]] = None) -> int:
    """Fold (customer, event) pairs not counted yet, in one transaction; returns how many were new."""
    pairs = [(c, e) for c, e in events if c and isinstance(e, dict)]
    new = 0
    with session_scope() as session:
        ids = {str(e.get("event_id")) for _, e in pairs if e.get("event_id")}
        seen = set(session.scalars(select(AnalyticsSeen.event_id).where(AnalyticsSeen.event_id.in_(ids)))) if ids else set()
        folder = Folder(session, asked_slots())
        folder.preload(customer for customer, _ in pairs)
        counted = []
        for customer, event in pairs:
            event_id = event.get("event_id")
            if event_id:
                event_id = str(event_id)[:160]
                if event_id in seen:
                    continue
                seen.add(event_id)
                counted.append({"event_id": event_id})
            folder.apply(customer, event)
            new += 1
        folder.finish()
        if counted:
            session.execute(AnalyticsSeen.__table__.insert(), counted)
        if checkpoint is not None:
            source, position = checkpoint
            row = session.get(AnalyticsCheckpoint, source)
            if row is None:
                session.add(AnalyticsCheckpoint(source=source, position=position))
            else:
                row.position = position
    return new


# ------------------------------------------------------------------- SQL source


def _events_table():
    from rasa.core.brokers.sql import SQLEventBroker

    return SQLEventBroker.SQLBrokerEvent.__table__


def sql_once(batch: int = BATCH) -> int:
    """Fold the next batch of the SQL broker's events after the checkpoint; the number of rows read."""
    table = _events_table()
    with session_scope() as session:
        if not session.get_bind().dialect.has_table(session.connection(), "events"):
            return 0  # the relay has not written anything yet
        row = session.get(AnalyticsCheckpoint, SQL_SOURCE)
        position = row.position if row else 0
        rows = session.execute(
            select(table.c.id, table.c.sender_id, table.c.data).where(table.c.id > position)
            .order_by(table.c.id).limit(batch)
        ).all()
    if not rows:
        return 0
    pairs = []
    for _, sender, data in rows:
        try:
            event = ujson.loads(data)
        except (TypeError, ValueError):
            logger.warning("analytics: an event that is not JSON skipped")
            continue
        pairs.append((sender or event.get("sender_id"), event))
    apply_batch(pairs, (SQL_SOURCE, rows[-1][0]))
    return len(rows)


def catch_up() -> int:
    """Read the SQL source to its end; returns the rows read."""
    total = 0
    while True:
        done = sql_once()
        total += done
        if done == 0:
            return total


def consumer_lease() -> Lease:
    """One consumer folds at a time (several stacks or replicas may start one): order matters per customer."""
    return Lease(lambda: Keys().analytics_lease(), LEASE_MS)


async def run_sql(stop: asyncio.Event, lease: Optional[Lease] = None) -> None:
    """Follow the SQL source until ``stop`` (while holding ``lease``)."""
    lease = lease or consumer_lease()
    while not stop.is_set():
        try:
            done = await asyncio.to_thread(sql_once) if await asyncio.to_thread(lease.hold) else 0
        except Exception:
            logger.exception("analytics: a batch failed; retrying")
            done = 0
        if not done:
            try:
                await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
            except asyncio.TimeoutError:
                pass


# -------------------------------------------------------------- RabbitMQ source


async def run_rabbitmq(stop: asyncio.Event, url: str, queue_name: str, once: bool = False) -> int:
    """Consume the queue, acknowledging each batch after its commit; returns the messages handled."""
    import aio_pika

    handled = 0
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=BATCH)
        queue = await channel.declare_queue(queue_name, durable=True)
        lease = consumer_lease()
        while not stop.is_set():
            if not once and not await asyncio.to_thread(lease.hold):  # another consumer folds: order matters
                try:
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
                except asyncio.TimeoutError:
                    pass
                continue
            messages = []
            while len(messages) < BATCH:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(message)
            if messages:
                pairs = []
                for message in messages:
                    try:
                        event = ujson.loads(message.body)
                    except ValueError:
                        continue
                    pairs.append((event.get("sender_id"), event))
                await asyncio.to_thread(apply_batch, pairs)
                for message in messages:
                    await message.ack()
                handled += len(messages)
                continue
            if once:
                break
            try:
                await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
            except asyncio.TimeoutError:
                pass
    return handled


async def _main_async(once: bool) -> int:
    config = settings_module.get()
    from threadline.db.session import init_schema

    await asyncio.to_thread(init_schema)
    stop = asyncio.Event()
    if not once:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    rabbit = config.get("RABBITMQ_URL")
    if rabbit:
        handled = await run_rabbitmq(stop, rabbit, config.get("EVENT_QUEUE"), once)
        print(f"analytics: {handled} events from RabbitMQ", flush=True)
    elif once:
        print(f"analytics: {await asyncio.to_thread(catch_up)} events from the business database", flush=True)
    else:
        print("analytics consumer: events -> analytics tables", flush=True)
        await run_sql(stop)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m threadline.analytics.consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="catch up with the broker, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_main_async(args.once))


if __name__ == "__main__":
    sys.exit(main())
