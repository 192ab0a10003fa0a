"""Benchmark: one turn of a returning customer, RedisEventLogTrackerStore vs Rasa's RedisTrackerStore.

A turn is what Rasa's processor does per message: retrieve the tracker, add 5
events, save it. The customer has H earlier sessions of ~20 events each, every
one opened the way Rasa opens a session, plus the current session. Both stores
use the same Redis (REDIS_URL, else the embedded server) under a throwaway key
prefix that is deleted afterwards. Prints the median of 7 turns per store and H
and whether the targets are met; always exits 0.

    PYTHONPATH=. .venv/bin/python bench/tracker_store.py
"""
from stopping import on_signals_exit  # bench/ is the script directory (first on sys.path)
import asyncio
import gc
import statistics
import sys
import time
import uuid
from typing import List

import redis

from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from threadline import redis_client, settings
from threadline.tracker_store import RedisEventLogTrackerStore

HISTORIES = (0, 10, 100, 300)
REPEATS = 7
WARMUP = 3
TARGET_MS_AT_300 = 2.0
TARGET_SPEEDUP_AT_300 = 200.0
TARGET_FLATNESS = 1.5

DOMAIN = Domain.from_dict(
    {
        "version": "3.1",
        "intents": ["greet", "order_status"],
        "slots": {
            "order_id": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]}
        },
    }
)


class Clock:
    """Strictly increasing event timestamps."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def session(clock: Clock, number: int) -> List[Event]:
    """One ~20-event session, opened like Rasa's action_session_start opens one."""
    events: List[Event] = [
        ActionExecuted(ACTION_SESSION_START_NAME, timestamp=clock()),
        SessionStarted(timestamp=clock()),
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=clock()),
    ]
    for turn in range(3):
        events += [
            UserUttered(
                f"where is order A-{number}-{turn}",
                {"name": "order_status", "confidence": 0.97},
                [{"entity": "order_id", "value": f"A-{number}-{turn}", "start": 15, "end": 22}],
                timestamp=clock(),
                input_channel="whatsapp",
                metadata={"channel": "whatsapp", "trust": "verified", "message_id": uuid.uuid4().hex},
            ),
            SlotSet("order_id", f"A-{number}-{turn}", timestamp=clock()),
            ActionExecuted("action_check_order", policy="RulePolicy", confidence=1.0, timestamp=clock()),
            BotUttered(f"Order A-{number}-{turn} ships today.", {"buttons": None}, timestamp=clock()),
            ActionExecuted(ACTION_LISTEN_NAME, timestamp=clock()),
        ]
    return events + [UserUttered("thanks", {"name": "greet"}, timestamp=clock())]


def new_events(clock: Clock) -> List[Event]:
    """The 5 events one turn adds."""
    return [
        UserUttered("and my other order?", {"name": "order_status", "confidence": 0.9}, timestamp=clock()),
        SlotSet("order_id", "B-1", timestamp=clock()),
        ActionExecuted("action_check_order", timestamp=clock()),
        BotUttered("Order B-1 is on its way.", timestamp=clock()),
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=clock()),
    ]


async def median_turn_ms(store, sender_id: str, clock: Clock) -> float:
    """Median wall time of REPEATS turns (after WARMUP untimed turns).

    As ``timeit`` does, the garbage collector is paused while timing, so a
    collection triggered by the other store's garbage is not billed here.
    """
    timings = []
    gc.collect()
    gc.disable()
    try:
        for attempt in range(WARMUP + REPEATS):
            events = new_events(clock)
            started = time.perf_counter()
            tracker = await store.retrieve(sender_id)
            for event in events:
                tracker.update(event)
            await store.save(tracker)
            elapsed = (time.perf_counter() - started) * 1000
            if attempt >= WARMUP:
                timings.append(elapsed)
    finally:
        gc.enable()
    return statistics.median(timings)


async def run(url: str) -> None:
    prefix = "tlbench" + uuid.uuid4().hex[:8]
    ours = RedisEventLogTrackerStore(DOMAIN, redis=redis.Redis.from_url(url), key_prefix=prefix)
    rasa = RedisTrackerStore(DOMAIN, key_prefix=prefix + "rasa")
    rasa.red = redis.Redis.from_url(url, decode_responses=True)
    results = {}
    try:
        for history in HISTORIES:
            clock = Clock()
            events = [e for number in range(history + 1) for e in session(clock, number)]
            row = []
            for store in (ours, rasa):
                sender_id = f"c_bench{history}"
                await store.save(DialogueStateTracker.from_events(sender_id, events, DOMAIN.slots))
                row.append(await median_turn_ms(store, sender_id, clock))
            results[history] = row
            print(f"  H={history:<4} done", file=sys.stderr)
    finally:
        keys = list(ours.red.scan_iter(match=prefix + "*", count=1000))
        if keys:
            ours.red.delete(*keys)

    print(f"One turn (retrieve, add 5 events, save), median of {REPEATS}, Redis at {url}")
    print(f"{'H sessions':>10} {'events':>7} {'event log ms':>13} {'RedisTrackerStore ms':>21} {'speedup':>9}")
    for history, (mine, theirs) in results.items():
        print(f"{history:>10} {(history + 1) * 20:>7} {mine:>13.3f} {theirs:>21.2f} {theirs / mine:>8.0f}x")

    mine_300, theirs_300 = results[300]
    checks = [
        (f"event log <= {TARGET_MS_AT_300} ms at H=300", mine_300 <= TARGET_MS_AT_300, f"{mine_300:.3f} ms"),
        (
            f"event log >= {TARGET_SPEEDUP_AT_300:.0f}x faster than RedisTrackerStore at H=300",
            theirs_300 / mine_300 >= TARGET_SPEEDUP_AT_300,
            f"{theirs_300 / mine_300:.0f}x",
        ),
        (
            f"event log H=300 cost within {TARGET_FLATNESS}x of its H=0 cost",
            mine_300 <= TARGET_FLATNESS * results[0][0],
            f"{mine_300 / results[0][0]:.2f}x",
        ),
    ]
    for label, met, figure in checks:
        print(f"[{'MET' if met else 'MISSED'}] {label}: {figure}")


def main() -> int:
    """Run the benchmark on REDIS_URL or the embedded server."""
    on_signals_exit()
    starts_embedded = not settings.get().redis_url and not redis_client.embedded_running()
    try:
        asyncio.run(run(redis_client.redis_url()))
    finally:
        if starts_embedded:  # stop what this run started, however it ends
            redis_client.stop_embedded()
    return 0


if __name__ == "__main__":
    sys.exit(main())
