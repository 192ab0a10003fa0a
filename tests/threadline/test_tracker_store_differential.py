"""Differential test: RedisEventLogTrackerStore against Rasa's RedisTrackerStore.

Both stores live on the same real Redis (different prefixes) and are driven
through the same random histories: turns that retrieve, append and save the
way Rasa's processor does, trackers held across several saves, full trackers
saved back, repeated saves, session starts with slots carried over, restarts.
After every step both must give the same events (and slots) from
``retrieve`` and ``retrieve_full_tracker``.
"""
import copy
import random

import pytest
import redis

from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_RESTART_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

SEQUENCES = 200
SLOTS = ("order_id", "customer_name")


class EventSource:
    """Random but plausible events with a clock that sometimes stands still."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.clock = 1_700_000_000.0
        self.slots = {}

    def _ts(self) -> float:
        if self.rng.random() > 0.1:
            self.clock += self.rng.choice([0.001, 0.25, 3.0, 3600.0])
        return self.clock

    def session_start(self):
        events = [ActionExecuted(ACTION_SESSION_START_NAME, timestamp=self._ts()), SessionStarted(timestamp=self._ts())]
        events += [SlotSet(k, v, timestamp=self._ts()) for k, v in sorted(self.slots.items())]
        return events + [ActionExecuted(ACTION_LISTEN_NAME, timestamp=self._ts())]

    def restart(self):
        self.slots = {}
        return [
            UserUttered("/restart", {"name": "restart", "confidence": 1.0}, timestamp=self._ts()),
            ActionExecuted(ACTION_RESTART_NAME, timestamp=self._ts()),
            Restarted(timestamp=self._ts()),
            ActionExecuted(ACTION_LISTEN_NAME, timestamp=self._ts()),
        ]

    def turn(self):
        rng = self.rng
        intent = rng.choice(["greet", "order_status", "goodbye"])
        events = [
            UserUttered(
                rng.choice(["hi", "where is my order", "bye", "A-%d" % rng.randint(1, 99)]),
                {"name": intent, "confidence": round(rng.random(), 3)},
                [{"entity": "order_id", "value": "A-1", "start": 0, "end": 3}] if rng.random() < 0.3 else [],
                timestamp=self._ts(),
                input_channel=rng.choice(["whatsapp", "telegram", "webchat"]),
                metadata={"channel": "whatsapp", "trust": "verified"},
            )
        ]
        if rng.random() < 0.4:
            key, value = rng.choice(SLOTS), rng.choice(["A-1", "A-2", None, "Ann"])
            self.slots[key] = value
            events.append(SlotSet(key, value, timestamp=self._ts()))
        if rng.random() < 0.2:
            events.append(ActiveLoop(rng.choice(["order_form", None]), timestamp=self._ts()))
        events.append(ActionExecuted("utter_greet", policy="RulePolicy", confidence=1.0, timestamp=self._ts()))
        events.append(BotUttered(rng.choice(["Hi", "Your order ships today"]), {"buttons": None}, timestamp=self._ts()))
        events.append(ActionExecuted(ACTION_LISTEN_NAME, timestamp=self._ts()))
        return events

    def batch(self):
        roll = self.rng.random()
        if roll < 0.2:
            return self.session_start() + self.turn()
        if roll < 0.28:
            return self.restart()
        return self.turn()


@pytest.fixture
def stores(domain, redis_url, redis_conn, key_prefix):
    ours = RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)
    rasa = RedisTrackerStore(domain, key_prefix=key_prefix + "rasa")
    # Rasa's store only takes host/port; point it at the same (maybe unix-socket) server.
    rasa.red = redis.Redis.from_url(redis_url, decode_responses=True)
    yield ours, rasa
    rasa.red.close()


def _dicts(tracker):
    return None if tracker is None else [event.as_dict() for event in tracker.events]


async def _assert_same(ours, rasa, sender_id, rng):
    for method in ("retrieve", "retrieve_full_tracker"):
        mine = await getattr(ours, method)(sender_id)
        theirs = await getattr(rasa, method)(sender_id)
        assert _dicts(mine) == _dicts(theirs), method
        if mine is not None:
            assert mine.current_slot_values() == theirs.current_slot_values(), method
    # Retrieval with a max event history (only for reading: Rasa's store would
    # also truncate what it saves back).
    limit = rng.randint(1, 30)
    ours.max_event_history = rasa.max_event_history = limit
    try:
        mine, theirs = await ours.retrieve(sender_id), await rasa.retrieve(sender_id)
        assert _dicts(mine) == _dicts(theirs), f"retrieve, max_event_history={limit}"
        assert mine.current_slot_values() == theirs.current_slot_values()
    finally:
        ours.max_event_history = rasa.max_event_history = None


async def _apply_and_save(store, tracker, events):
    for event in events:
        tracker.update(copy.deepcopy(event))
    await store.save(tracker)


async def _run_sequence(ours, rasa, seed):
    rng = random.Random(seed)
    source = EventSource(rng)
    sender_id = f"conv{seed}"
    held = None  # a tracker each store keeps across several saves
    first = source.session_start()
    for store in (ours, rasa):
        await store.save(DialogueStateTracker.from_events(sender_id, copy.deepcopy(first), store.domain.slots))

    for _ in range(rng.randint(3, 14)):
        op = rng.random()
        events = source.batch()
        if op < 0.55:  # a processor turn: retrieve the latest session, append, save
            for store in (ours, rasa):
                await _apply_and_save(store, await store.retrieve(sender_id), events)
        elif op < 0.7:  # a full tracker saved back with new events
            for store in (ours, rasa):
                await _apply_and_save(store, await store.retrieve_full_tracker(sender_id), events)
        elif op < 0.9:  # a tracker held in memory, growing, saved again and again
            if held is None:
                held = [await store.retrieve(sender_id) for store in (ours, rasa)]
            for store, tracker in zip((ours, rasa), held):
                await _apply_and_save(store, tracker, events)
        else:  # the same tracker saved twice
            for store in (ours, rasa):
                tracker = await store.retrieve(sender_id)
                await _apply_and_save(store, tracker, events)
                await store.save(tracker)
        await _assert_same(ours, rasa, sender_id, rng)


async def test_same_results_as_rasa_redis_tracker_store(stores):
    ours, rasa = stores
    for seed in range(SEQUENCES):
        try:
            await _run_sequence(ours, rasa, seed)
        except AssertionError as error:
            raise AssertionError(f"sequence with seed {seed}: {error}") from error
