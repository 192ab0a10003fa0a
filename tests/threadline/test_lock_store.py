"""The conversation lock store: Rasa's interface, atomic across real processes.

The cross-process tests run worker processes (spawned, each with its own
client) against the same Redis, the way two rasa servers share one. Inside
the lock every worker does a deliberately non-atomic read -> pause -> write
on a counter and logs when it entered and left: with a correct lock the
counter equals the number of turns and no two turns overlap.
"""
import asyncio
import multiprocessing
import os
import signal
import time

import pytest
import redis as redis_lib

from rasa.core.lock_store import LockError, LockStore
from rasa.utils.endpoints import EndpointConfig

from threadline.lock_store import RedisTicketLockStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


def make(redis_url, key_prefix):
    return LockStore.create(
        EndpointConfig(url=redis_url, type="threadline.lock_store.RedisTicketLockStore", key_prefix=key_prefix)
    )


@pytest.fixture
def lock_store(redis_url, key_prefix):
    return make(redis_url, key_prefix)


async def test_created_from_endpoint_config_with_keys_under_the_prefix(lock_store, redis_conn, key_prefix):
    assert isinstance(lock_store, RedisTicketLockStore)
    assert lock_store.issue_ticket("c_1") == 0
    assert lock_store.issue_ticket("c_1") == 1
    assert sorted(redis_conn.keys(f"{key_prefix}:lock:*")) == [f"{key_prefix}:lock:n:c_1".encode(),
                                                                f"{key_prefix}:lock:q:c_1".encode()]
    lock = lock_store.get_lock("c_1")  # Rasa's TicketLock view of it
    assert lock.now_serving == 0 and lock.last_issued == 1 and lock.is_someone_waiting()
    lock_store.cleanup("c_1", 0)
    lock_store.cleanup("c_1", 1)
    assert redis_conn.keys(f"{key_prefix}:lock:*") == []  # the last ticket takes the keys with it


async def test_first_come_first_served_and_waiters_see_their_place(lock_store):
    async with lock_store.lock("c_2"):
        waiting = lock_store.issue_ticket("c_2")
        assert lock_store.tickets_ahead("c_2", waiting) == 1
        assert lock_store.is_someone_waiting("c_2")
    assert lock_store.tickets_ahead("c_2", waiting) == 0
    lock_store.cleanup("c_2", waiting)
    assert lock_store.get_lock("c_2") is None


async def test_turns_in_one_process_are_serialised_in_arrival_order(lock_store):
    order = []

    async def turn(name):
        async with lock_store.lock("c_3", wait_time_in_seconds=0.01):
            order.append(f"{name} in")
            await asyncio.sleep(0.02)
            order.append(f"{name} out")

    await asyncio.gather(*(turn(n) for n in "abcd"))
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out", "d in", "d out"]


async def test_an_expired_holder_frees_the_conversation_and_an_expired_waiter_is_told(lock_store):
    lock_store.issue_ticket("c_4", lock_lifetime=0.3)  # a holder that will never release
    started = time.monotonic()
    async with lock_store.lock("c_4", lock_lifetime=5, wait_time_in_seconds=0.05):
        assert time.monotonic() - started >= 0.25  # it waited for the dead holder's lifetime
    lock_store.issue_ticket("c_5", lock_lifetime=5)
    with pytest.raises(LockError):
        async with lock_store.lock("c_5", lock_lifetime=0.2, wait_time_in_seconds=0.05):
            pass


# ------------------------------------------------------------ two processes


def _worker(url, prefix, conversation, turns, name, store_path, ready):
    """One 'rasa server': ``turns`` turns on one conversation, each a racy read-modify-write."""
    from rasa.utils.endpoints import EndpointConfig as Config
    from rasa.core.lock_store import LockStore as Store

    store = Store.create(Config(url=url, type=store_path, key_prefix=prefix))
    client = redis_lib.Redis.from_url(url)
    counter, log = f"{prefix}:test:counter", f"{prefix}:test:log"

    async def turns_():
        ready.wait()
        for _ in range(turns):
            async with store.lock(conversation, wait_time_in_seconds=0.01):
                client.rpush(log, f"{name} in")
                value = int(client.get(counter) or 0)
                await asyncio.sleep(0.002)  # the turn's work, between the read and the write
                client.set(counter, value + 1)
                client.rpush(log, f"{name} out")

    asyncio.run(turns_())


def _hammer(redis_url, key_prefix, store_path, processes=3, turns=30):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    workers = [context.Process(target=_worker, args=(redis_url, key_prefix, "c_shared", turns, f"p{i}",
                                                      store_path, ready)) for i in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # every worker imported and waiting
    ready.set()
    for worker in workers:
        worker.join(300)
    client = redis_lib.Redis.from_url(redis_url)
    log = [entry.decode() for entry in client.lrange(f"{key_prefix}:test:log", 0, -1)]
    return int(client.get(f"{key_prefix}:test:counter") or 0), log, [w.exitcode for w in workers]


def test_three_processes_on_one_conversation_never_overlap(redis_url, key_prefix):
    total, log, exits = _hammer(redis_url, key_prefix, "threadline.lock_store.RedisTicketLockStore")
    assert exits == [0, 0, 0]
    assert total == 90  # no lost update
    assert len(log) == 180
    for entered, left in zip(log[::2], log[1::2]):  # strictly: in, out, in, out ...
        assert entered.endswith(" in") and left == entered.replace(" in", " out")


def _hold_forever(url, prefix, lifetime, held):
    store = RedisTicketLockStore(url=url, key_prefix=prefix)

    async def hold():
        async with store.lock("c_killed", lock_lifetime=lifetime):
            held.set()
            await asyncio.sleep(3600)

    asyncio.run(hold())


async def test_a_holder_killed_mid_turn_frees_the_conversation_after_its_lifetime(lock_store, redis_url, key_prefix):
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    holder = context.Process(target=_hold_forever, args=(redis_url, key_prefix, 2.0, held))
    holder.start()
    try:
        assert held.wait(120)
        ticket = lock_store.issue_ticket("c_killed", lock_lifetime=30)
        assert lock_store.tickets_ahead("c_killed", ticket) == 1  # the live holder is served
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: no cleanup runs
        holder.join(30)
        for _ in range(200):
            if lock_store.tickets_ahead("c_killed", ticket) == 0:
                break
            await asyncio.sleep(0.05)
        assert lock_store.tickets_ahead("c_killed", ticket) == 0
        lock_store.cleanup("c_killed", ticket)
    finally:
        if holder.is_alive():
            holder.kill()
