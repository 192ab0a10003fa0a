"""RedisEventLogTrackerStore on a real Redis: the tracker-store cases of Rasa's own suite and ours."""
import pytest

from rasa.core.tracker_store import TrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_RESTART_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from threadline.tracker_store import RedisEventLogTrackerStore

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


@pytest.fixture
def store(domain, redis_conn, key_prefix):
    return RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix)


def _session(start: float):
    return [
        ActionExecuted(ACTION_SESSION_START_NAME, timestamp=start),
        SessionStarted(timestamp=start + 0.1),
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=start + 0.2),
    ]


def _restarted_conversation():
    """Two sessions, the second with a restart in it; returns (all events, events of the last session)."""
    first = _session(1) + [UserUttered("hi", {"name": "greet"}, timestamp=2), BotUttered("Hi", timestamp=3)]
    last = _session(10) + [
        UserUttered("/restart", {"name": "restart"}, timestamp=11),
        ActionExecuted(ACTION_RESTART_NAME, timestamp=12),
        Restarted(timestamp=13),
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=14),
        UserUttered("where is my order", {"name": "order_status"}, timestamp=15),
    ]
    return first + last, last


async def test_get_or_create_keeps_slot(store):
    tracker = await store.get_or_create_tracker("alice")
    tracker.update(SlotSet("order_id", "A-42"))
    await store.save(tracker)

    again = await store.get_or_create_tracker("alice")
    assert again.get_slot("order_id") == "A-42"


async def test_restart_index_survives_retrieval(store):
    tracker = await store.get_or_create_tracker("bob")
    for _ in range(4):
        tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
    tracker.update(Restarted())
    await store.save(tracker)

    retrieved = await store.retrieve("bob")
    assert retrieved.idx_after_latest_restart() == tracker.idx_after_latest_restart()


async def test_remembers_max_event_history(store):
    tracker = await store.get_or_create_tracker("carol", max_event_history=42)
    tracker.update(Restarted())
    await store.save(tracker)

    retrieved = await store.retrieve("carol")
    assert tracker._max_event_history == retrieved._max_event_history == 42


async def test_max_event_history_truncates_latest_session(store):
    events = _session(1) + [SlotSet("order_id", str(i), timestamp=2 + i) for i in range(10)]
    await store.save(DialogueStateTracker.from_events("dave", events))
    store.max_event_history = 4

    retrieved = await store.retrieve("dave")
    assert list(retrieved.events) == events[-4:]
    assert retrieved.get_slot("order_id") == "9"


async def test_retrieve_returns_latest_session_only(store):
    events, last_session = _restarted_conversation()
    await store.save(DialogueStateTracker.from_events("erin", events))
    await store.save(DialogueStateTracker.from_events("other", _session(5)))

    retrieved = await store.retrieve("erin")
    assert list(retrieved.events) == last_session


async def test_retrieve_without_session_starts_returns_everything(store):
    events = [
        UserUttered("Hola", {"name": "greet"}),
        BotUttered("Hi"),
        UserUttered("Ciao", {"name": "greet"}),
        BotUttered("Hi2"),
    ]
    await store.save(DialogueStateTracker.from_events("frank", events))

    assert list((await store.retrieve("frank")).events) == events


async def test_retrieve_full_tracker_returns_every_session(store):
    events, _ = _restarted_conversation()
    tracker = DialogueStateTracker.from_events("gina", events)
    await store.save(tracker)

    assert await store.retrieve_full_tracker("gina") == tracker


async def test_slots_carried_over_into_new_session(store):
    tracker = DialogueStateTracker.from_events(
        "hank", _session(1) + [SlotSet("customer_name", "Hank", timestamp=2)], store.domain.slots
    )
    await store.save(tracker)

    # What action_session_start does: a new session re-setting the slots.
    current = await store.retrieve("hank")
    for event in _session(20) + [SlotSet("customer_name", "Hank", timestamp=20.3)]:
        current.update(event)
    await store.save(current)

    latest = await store.retrieve("hank")
    assert latest.events[0] == ActionExecuted(ACTION_SESSION_START_NAME, timestamp=20)
    assert latest.get_slot("customer_name") == "Hank"
    assert len((await store.retrieve_full_tracker("hank")).events) == 8


async def test_saving_twice_stores_nothing_twice(store):
    events, _ = _restarted_conversation()
    tracker = DialogueStateTracker.from_events("ivy", events)
    await store.save(tracker)
    await store.save(tracker)
    await store.save(await store.retrieve("ivy"))
    await store.save(await store.retrieve_full_tracker("ivy"))

    assert list((await store.retrieve_full_tracker("ivy")).events) == events


async def test_only_new_events_are_appended_after_retrieve(store):
    await store.save(
        DialogueStateTracker.from_events("jack", _session(1) + [UserUttered("hi"), ActionExecuted("a"), UserUttered("hi2")])
    )
    tracker = await store.retrieve("jack")
    tracker.update(UserUttered("hi3"))
    added = store.save_sync(tracker)

    assert added == 1
    assert [e.text for e in (await store.retrieve("jack")).events if isinstance(e, UserUttered)] == [
        "hi",
        "hi2",
        "hi3",
    ]


async def test_saving_tracker_with_old_session_only_appends(store):
    prior = _session(1) + [UserUttered("hello", timestamp=4), BotUttered("Hey!", timestamp=5)]
    await store.save(DialogueStateTracker.from_events("kim", prior))
    new_session = _session(8) + [UserUttered("I need help.", timestamp=11)]
    await store.save(DialogueStateTracker.from_events("kim", new_session))

    assert list((await store.retrieve_full_tracker("kim")).events) == prior + new_session
    assert list((await store.retrieve("kim")).events) == new_session


async def test_empty_tracker_exists(store):
    tracker = await store.get_or_create_tracker("lee", append_action_listen=False)
    assert list(tracker.events) == []
    assert await store.exists("lee")
    assert (await store.retrieve("lee")) is not None
    assert await store.retrieve("nobody") is None
    assert not await store.exists("nobody")


async def test_keys_and_delete(store):
    await store.get_or_create_tracker("m1")
    await store.get_or_create_tracker("m2")
    assert sorted(await store.keys()) == ["m1", "m2"]

    await store.delete("m1")
    assert await store.retrieve("m1") is None
    assert list(await store.keys()) == ["m2"]


async def test_record_exp_set_and_refreshed(store, redis_conn, key_prefix):
    store.record_exp = 100
    tracker = await store.get_or_create_tracker("nia")
    keys = store._keys("nia")
    assert all(0 < redis_conn.ttl(key) <= 100 for key in keys)

    for key in keys:
        redis_conn.expire(key, 5)
    tracker.update(UserUttered("again"))
    await store.save(tracker)
    assert all(redis_conn.ttl(key) > 5 for key in keys)


async def test_retrieve_reads_from_last_session_offset(store, redis_conn):
    events = []
    for session in range(50):
        events += _session(session * 10) + [UserUttered(f"m{session}", timestamp=session * 10 + 1)]
    await store.save(DialogueStateTracker.from_events("olga", events))

    offsets = [int(x) for x in redis_conn.lrange(store._keys("olga")[1], 0, -1)]
    assert offsets == [i * 4 for i in range(50)]
    assert [e.text for e in (await store.retrieve("olga")).events if isinstance(e, UserUttered)] == ["m49"]


async def test_merge_conversations(store, redis_conn):
    a = [ActionExecuted(ACTION_SESSION_START_NAME, timestamp=1), SessionStarted(timestamp=2), UserUttered("a1", timestamp=3), UserUttered("a2", timestamp=7)]
    b = [ActionExecuted(ACTION_SESSION_START_NAME, timestamp=4), SessionStarted(timestamp=5), UserUttered("b1", timestamp=6), UserUttered("b2", timestamp=7)]
    await store.save(DialogueStateTracker.from_events("from", a))
    await store.save(DialogueStateTracker.from_events("into", b))

    assert await store.merge_conversations("from", "into")

    assert await store.retrieve("from") is None
    assert not redis_conn.exists(*store._keys("from"))
    merged = list((await store.retrieve_full_tracker("into")).events)
    # timestamp order, ties keep "into" first
    assert merged[:-1] == [a[0], a[1], a[2], b[0], b[1], b[2], b[3], a[3]]
    assert merged[-1].key == "identity_merged_from" and merged[-1].value == "from"
    offsets = [int(x) for x in redis_conn.lrange(store._keys("into")[1], 0, -1)]
    assert offsets == [0, 3]
    latest = await store.retrieve("into")
    assert latest.get_slot("identity_merged_from") == "from"
    assert latest.events[0] == b[0]
    # the digests were carried over: re-saving the old trackers adds nothing
    assert store.save_sync(DialogueStateTracker.from_events("into", a + b)) == 0
    assert await store.merge_conversations("from", "into") is False


async def test_loaded_from_endpoint_config(domain, redis_url, key_prefix):
    config = EndpointConfig(
        url=redis_url,
        type="threadline.tracker_store.RedisEventLogTrackerStore",
        key_prefix=key_prefix,
        record_exp=None,
        some_unknown_option=True,
    )
    store = TrackerStore.create(config, domain)
    assert isinstance(store, RedisEventLogTrackerStore)
    tracker = await store.get_or_create_tracker("pam")
    assert await store.retrieve("pam") == tracker


async def test_host_and_port_build_a_url(domain):
    store = RedisEventLogTrackerStore(domain, host="redis.internal", port=6380, db=2, password="p w")
    kwargs = store.red.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("redis.internal", 6380, 2, "p w")


async def test_event_broker_receives_new_events_only(domain, redis_conn, key_prefix):
    published = []

    class Broker:
        def publish(self, event):
            published.append(event)

    store = RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix, event_broker=Broker())
    tracker = await store.get_or_create_tracker("quin")
    tracker.update(UserUttered("hi"))
    await store.save(tracker)
    assert [event["event"] for event in published] == ["action", "user"]


async def test_streaming_never_reads_the_conversation_back(domain, redis_conn, key_prefix):
    """Rasa's stream_events retrieves the stored tracker to diff it; each save here streams what it adds."""
    published = []

    class Broker:
        def publish(self, event):
            published.append((event["event"], event.get("text")))

    store = RedisEventLogTrackerStore(domain, redis=redis_conn, key_prefix=key_prefix, event_broker=Broker())
    tracker = await store.get_or_create_tracker("vera")
    tracker.update(UserUttered("one"))
    await store.save(tracker)
    reread = await store.retrieve("vera")

    def no_reads(*_args, **_kwargs):
        raise AssertionError("a save read the conversation back")

    store._retrieve = no_reads
    tracker.update(UserUttered("two"))
    await store.save(tracker)  # the same tracker again: only "two" is new
    await store.save(tracker)  # nothing new
    reread.update(UserUttered("three"))
    await store.save(reread)  # a tracker read before "two" was saved: only "three" is new
    assert published == [("action", None), ("user", "one"), ("user", "two"), ("user", "three")]
    del store._retrieve
    assert [e.text for e in (await store.retrieve("vera")).events if isinstance(e, UserUttered)] == [
        "one", "two", "three"]


async def test_resaving_after_delete_stores_the_whole_tracker(store):
    events, _ = _restarted_conversation()
    await store.save(DialogueStateTracker.from_events("rita", events))
    tracker = await store.retrieve_full_tracker("rita")
    await store.delete("rita")

    tracker.update(UserUttered("still there?", timestamp=99))
    await store.save(tracker)
    assert list((await store.retrieve_full_tracker("rita")).events) == events + [tracker.events[-1]]


async def test_events_read_from_another_conversation_are_stored(store):
    events, last_session = _restarted_conversation()
    await store.save(DialogueStateTracker.from_events("sam", events))
    copied = list((await store.retrieve("sam")).events)

    await store.save(DialogueStateTracker.from_events("tom", copied))
    assert list((await store.retrieve_full_tracker("tom")).events) == last_session


async def test_a_merge_keeps_the_slots_and_the_open_task_of_both_sides(domain, redis_conn, key_prefix):
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActiveLoop

    slots = {name: {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]}
             for name in ("order_number", "email", "city", "identity_merged_from", "requested_slot")}
    both = Domain.from_dict({"version": "3.1", "intents": ["greet"], "slots": slots,
                             "forms": {"order_status_form": {"required_slots": ["order_number"]}}})
    store = RedisEventLogTrackerStore(both, redis=redis_conn, key_prefix=key_prefix)
    # WhatsApp: an order check in progress, the number given, the email given earlier.
    whatsapp = [ActionExecuted(ACTION_SESSION_START_NAME, timestamp=10), SessionStarted(timestamp=11),
                SlotSet("email", "old@example.com", timestamp=12), UserUttered("where is my order", timestamp=13),
                ActiveLoop("order_status_form", timestamp=14), SlotSet("requested_slot", "order_number", timestamp=14),
                SlotSet("order_number", "482913", timestamp=15), SlotSet("city", "Paris", timestamp=16)]
    # The web visitor: a session of its own, started later, with a newer email.
    web = [ActionExecuted(ACTION_SESSION_START_NAME, timestamp=20), SessionStarted(timestamp=21),
           UserUttered("LINK 123456", timestamp=22), SlotSet("email", "new@example.com", timestamp=23)]
    await store.save(DialogueStateTracker.from_events("whatsapp-customer", whatsapp, both.slots))
    await store.save(DialogueStateTracker.from_events("web-visitor", web, both.slots))

    assert await store.merge_conversations("web-visitor", "whatsapp-customer")

    latest = await store.retrieve("whatsapp-customer")  # what the next turn, on either channel, sees
    assert latest.get_slot("order_number") == "482913" and latest.get_slot("city") == "Paris"  # nothing lost
    assert latest.get_slot("email") == "new@example.com"  # the later value wins
    assert latest.active_loop_name == "order_status_form" and latest.get_slot("requested_slot") == "order_number"
