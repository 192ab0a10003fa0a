"""A Redis tracker store that keeps each conversation as an append-only event log.

Rasa's ``RedisTrackerStore`` keeps a conversation as one JSON document, reads
and rewrites all of it on every turn, so a returning customer's turns get
slower with every session. Here each conversation ``sid`` has three keys under
``{key_prefix}:tracker:``:

``ev:{sid}``  list of events, each the canonical JSON of ``event.as_dict()``
              (sorted keys), in the order they were saved
``ss:{sid}``  list of session offsets: ``0`` first, then the index of every
              later ``ActionExecuted("action_session_start")``; it exists for
              every saved conversation, even one without events
``dg:{sid}``  set of digests of the stored events

``save`` appends, in one Lua script, the tracker's events whose digest is not
in the set yet, which is what Rasa's store does when it merges a saved tracker
into the stored one (events compared by ``as_dict()``); two rasa instances
saving the same conversation therefore never duplicate or lose events.
``retrieve`` reads only from the last session offset, in one round trip, so
its cost does not grow with the history.

Events built by ``retrieve`` remember their stored JSON and digest, so saving
them back sends only their digests (re-sent in full if the conversation was
deleted or merged meanwhile). Events are treated as immutable once stored,
as Rasa's processor does: an event changed in place after retrieval is not
stored again.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Text
from urllib.parse import quote

import redis as redis_lib
import ujson

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SerializedTrackerAsText, TrackerStore
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, Event, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from threadline import metrics, rasa_patches, redis_client
from threadline.conversation_merge import carried_state
from threadline import settings as settings_module
from threadline.keys import Keys

logger = logging.getLogger(__name__)

MERGED_FROM_SLOT = "identity_merged_from"
# Attribute cached on events read from the store:
# (key prefix + conversation id, digest, stored JSON).
_STORED = "_threadline_stored"

# KEYS: events, session offsets, digests, and the event outbox when events are
# streamed (``threadline.event_relay`` hands them on to the broker).
# ARGV: ttl seconds (0: none), dedupe ttl seconds, then per event: digest,
# json, "1" if it starts a session, and the dedupe key of the platform message
# it records ("" if none); last, the conversation id (the outbox entries' ``s``). An empty json means "read from this conversation,
# so stored": if one such digest is missing (conversation deleted or merged
# meanwhile), nothing is written and -1 returned, and the caller sends the
# full events. A customer message's dedupe key is marked done (with the
# conversation id, ``connectors.dedupe``) in the same script, so a redelivery
# after this save is a duplicate and one before it is processed: exactly once.
_SAVE_LUA = """
local ev, ss, dg, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sender = ARGV[#ARGV]
for i = 3, #ARGV - 1, 4 do
  if ARGV[i + 1] == '' and redis.call('SISMEMBER', dg, ARGV[i]) == 0 then return -1 end
end
if redis.call('EXISTS', ss) == 0 then redis.call('RPUSH', ss, 0) end
local n = redis.call('LLEN', ev)
local added = 0
for i = 3, #ARGV - 1, 4 do
  if ARGV[i + 1] ~= '' and redis.call('SADD', dg, ARGV[i]) == 1 then
    redis.call('RPUSH', ev, ARGV[i + 1])
    if outbox then redis.call('XADD', outbox, '*', 's', sender, 'd', ARGV[i], 'e', ARGV[i + 1]) end
    if ARGV[i + 2] == '1' and n > 0 then redis.call('RPUSH', ss, n) end
    if ARGV[i + 3] ~= '' then redis.call('SET', ARGV[i + 3], 'done:' .. sender, 'EX', ARGV[2]) end
    n = n + 1
    added = added + 1
  end
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  for _, key in ipairs({ev, ss, dg}) do redis.call('EXPIRE', key, ttl) end
end
return added
"""

# KEYS: events, session offsets. ARGV: max events (0: all), "1" for all sessions.
_RETRIEVE_LUA = """
local last = redis.call('LINDEX', KEYS[2], -1)
if not last then return false end
local first = 0
if ARGV[2] ~= '1' then first = tonumber(last) end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local tail = redis.call('LLEN', KEYS[1]) - limit
  if tail > first then first = tail end
end
return redis.call('LRANGE', KEYS[1], first, -1)
"""


def _canonical(event: Event) -> str:
    return json.dumps(event.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(encoded: bytes) -> str:
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


_event_classes: Dict[Text, Any] = {}


def _event_from_dict(data: Dict[Text, Any]) -> Optional[Event]:
    """``Event.from_parameters`` with the event class looked up once per type.

    Rasa walks every ``Event`` subclass for each event it deserialises, which
    costs more than everything else in a retrieve.
    """
    name = data.get("event")
    if name is None:
        return None
    if name not in _event_classes:
        _event_classes[name] = Event.resolve_by_type(name)
    event_class = _event_classes[name]
    return event_class._from_parameters(data) if event_class else None


def _is_session_start(event: Event) -> bool:
    return isinstance(event, ActionExecuted) and event.action_name == ACTION_SESSION_START_NAME


def _url_from(host: Optional[Text], port: Optional[int], db: Optional[int],
              username: Optional[Text], password: Optional[Text], use_ssl: bool) -> str:
    """A Redis URL from rasa's endpoint fields; ``host`` may already be a URL."""
    if not host:
        return redis_client.redis_url()
    if "://" in host:
        return host
    auth = ""
    if password:
        auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    scheme = "rediss" if use_ssl else "redis"
    return f"{scheme}://{auth}{host}:{port or 6379}/{db or 0}"


class RedisEventLogTrackerStore(TrackerStore, SerializedTrackerAsText):
    """Tracker store keeping each conversation as an append-only event log in Redis.

    Configured in ``endpoints.yml`` as ``type:
    threadline.tracker_store.RedisEventLogTrackerStore`` with an optional
    ``url`` (else ``REDIS_URL`` or the embedded server), ``key_prefix`` and
    ``record_exp`` (retention in seconds, refreshed on every save). Retrieval
    semantics are those of ``rasa.core.tracker_store.RedisTrackerStore``.
    """

    def __init__(
        self,
        domain: Optional[Domain] = None,
        host: Optional[Text] = None,
        port: Optional[int] = None,
        db: Optional[int] = None,
        username: Optional[Text] = None,
        password: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        record_exp: Optional[float] = None,
        key_prefix: Optional[Text] = None,
        use_ssl: bool = False,
        redis: Optional[redis_lib.Redis] = None,
        **kwargs: Any,
    ) -> None:
        """Connect to ``redis`` if given, else to the URL built from ``host`` & co."""
        # The rasa server builds its tracker store once at start-up, from
        # endpoints.yml: the one place Threadline's runtime fixes can ride in.
        rasa_patches.install()
        super().__init__(domain, event_broker, **kwargs)
        self.red = redis or redis_client.get_client(
            _url_from(host, port, db, username, password, use_ssl)
        )
        self.record_exp = int(record_exp) if record_exp else 0
        self.names = Keys(key_prefix)
        self.key_prefix = self.names.tracker_prefix()
        self.dedupe_ttl = settings_module.get().integer("DEDUPE_TTL_SECONDS")
        self.stream_to_outbox = settings_module.get().flag("EVENT_STREAM")
        self._save_script = self.red.register_script(_SAVE_LUA)
        self._retrieve_script = self.red.register_script(_RETRIEVE_LUA)

    def _keys(self, sender_id: Text) -> List[str]:
        return [self.names.tracker(kind, sender_id) for kind in ("ev", "ss", "dg")]

    def _save_keys(self, sender_id: Text) -> List[str]:
        keys = self._keys(sender_id)
        return keys + [self.names.event_outbox()] if self.stream_to_outbox else keys

    def _dedupe_key(self, event: Event) -> str:
        if not isinstance(event, UserUttered) or not event.message_id:
            return ""
        channel = (event.metadata or {}).get("channel") or event.input_channel
        return self.names.dedupe(channel, event.message_id) if channel else ""

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append the tracker's events that are not stored yet.

        A conversation whose customer confirmed an erasure in this turn
        (``threadline.erasure.request``) is erased instead: nothing of it is
        written back, nor sent to the event broker.
        """
        from threadline import erasure

        asked = erasure.pending(tracker.sender_id, self.red)
        if asked is not None:
            await asyncio.to_thread(erasure.erase, tracker.sender_id, owner=asked.get("owner"),
                                    actor=asked.get("actor") or "customer", redis=self.red)
            return
        new_events = self._unsaved(tracker)
        self.save_sync(tracker)
        await self._stream_new_events_if_any(new_events, tracker.sender_id)
        metrics.note_saved(tracker)  # the turn being measured reads its confidence and fallback from it

    def save_sync(self, tracker: DialogueStateTracker) -> int:
        """Blocking :meth:`save` without event streaming; returns the number of events added.

        Once stored, every event of the tracker remembers it (as a retrieved
        one does), so saving the same tracker again sends only digests and
        streams only what was added since.
        """
        keys = self._save_keys(tracker.sender_id)
        added = self._save_script(keys=keys, args=self._save_args(tracker, trust_cache=True))
        if added < 0:
            added = self._save_script(keys=keys, args=self._save_args(tracker, trust_cache=False))
        origin = self.key_prefix + tracker.sender_id
        for event in tracker.events:
            stored = event.__dict__.get(_STORED)
            if stored is not None and stored[0] != origin:
                event.__dict__[_STORED] = (origin, stored[1], stored[2])
        return added

    def _unsaved(self, tracker: DialogueStateTracker) -> List[Event]:
        """The tracker's events not read from (nor saved to) this conversation: what a save adds."""
        origin = self.key_prefix + tracker.sender_id
        return [event for event in tracker.events if (event.__dict__.get(_STORED) or ("",))[0] != origin]

    async def stream_events(self, tracker: DialogueStateTracker) -> None:
        """Hand the events a save of ``tracker`` adds to the event broker.

        Rasa's ``TrackerStore.stream_events`` retrieves the stored
        conversation again to diff it against the tracker: a second full read
        and decode on every turn (a tenth of a saturated replica's CPU). Here
        the events themselves say whether they are stored.
        """
        await self._stream_new_events_if_any(self._unsaved(tracker), tracker.sender_id)

    async def _stream_new_events_if_any(self, events: List[Event], sender_id: Text) -> None:
        if self.event_broker is not None and events:
            await self._stream_new_events(self.event_broker, events, sender_id)

    def _save_args(self, tracker: DialogueStateTracker, trust_cache: bool) -> List[Any]:
        args: List[Any] = [self.record_exp, self.dedupe_ttl]
        origin = self.key_prefix + tracker.sender_id
        for event in tracker.events:
            stored = event.__dict__.get(_STORED)
            if stored is not None and trust_cache and stored[0] == origin:
                # Read from this very conversation: its digest is enough.
                args.extend((stored[1], "", "0", ""))
                continue
            if stored is not None:
                digest, text = stored[1], stored[2]
            else:
                text = _canonical(event).encode()
                digest = _digest(text)
                event.__dict__[_STORED] = ("", digest, text)  # the origin is set once the save succeeded
            args.extend((digest, text, "1" if _is_session_start(event) else "0", self._dedupe_key(event)))
        args.append(tracker.sender_id)
        return args

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The conversation's latest session, or None if it was never saved."""
        return self._retrieve(sender_id, all_sessions=False)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        """The conversation with all its sessions, or None if it was never saved."""
        return self._retrieve(conversation_id, all_sessions=True)

    def _retrieve(self, sender_id: Text, all_sessions: bool) -> Optional[DialogueStateTracker]:
        ev, ss, _ = self._keys(sender_id)
        stored = self._retrieve_script(
            keys=[ev, ss], args=[self.max_event_history or 0, "1" if all_sessions else "0"]
        )
        if stored is None:
            logger.debug(f"Could not find tracker for conversation ID '{sender_id}'.")
            return None
        origin = self.key_prefix + sender_id
        events = []
        for text in stored:
            event = _event_from_dict(ujson.loads(text))
            if event is not None:
                # Lets save() skip re-serialising and re-sending stored events.
                event.__dict__[_STORED] = (origin, _digest(text), text)
                events.append(event)
        return DialogueStateTracker.from_events(
            sender_id, events, self.domain.slots, max_event_history=self.max_event_history
        )

    def recent_events_sync(self, conversation_id: Text, limit: int = 500) -> List[Dict[Text, Any]]:
        """The conversation's last ``limit`` stored events, as dicts (blocking; no tracker is built)."""
        return [ujson.loads(text) for text in self.red.lrange(self._keys(conversation_id)[0], -limit, -1)]

    async def exists(self, conversation_id: Text) -> bool:
        """Whether the conversation was ever saved (and has not expired)."""
        return bool(self.red.exists(self._keys(conversation_id)[1]))

    async def keys(self) -> Iterable[Text]:
        """Ids of all stored conversations."""
        marker = self.key_prefix + "ss:"
        return [
            key.decode()[len(marker):] if isinstance(key, bytes) else key[len(marker):]
            for key in self.red.scan_iter(match=marker + "*", count=1000)
        ]

    async def delete(self, sender_id: Text) -> None:
        """Forget the conversation."""
        self.red.delete(*self._keys(sender_id))

    async def merge_conversations(self, from_id: Text, into_id: Text) -> bool:
        """See :meth:`merge_conversations_sync`."""
        return self.merge_conversations_sync(from_id, into_id)

    def merge_conversations_sync(self, from_id: Text, into_id: Text) -> bool:
        """Move every event of ``from_id`` into ``into_id`` and delete ``from_id``.

        The events of both are kept in timestamp order (ties keep their
        order, ``into_id``'s first), session offsets are recomputed, and a
        ``SlotSet("identity_merged_from", from_id)`` is appended, then the
        state both sides had (``threadline.conversation_merge``). Runs as a
        WATCH/MULTI transaction, retried if another writer touches either
        conversation meanwhile. Returns False if ``from_id`` has no
        conversation (nothing to merge).
        """
        if from_id == into_id:
            return False
        from_keys, into_keys = self._keys(from_id), self._keys(into_id)
        while True:
            with self.red.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*from_keys, *into_keys)
                    if not pipe.exists(from_keys[1]):
                        pipe.unwatch()
                        return False
                    into_raw, from_raw = pipe.lrange(into_keys[0], 0, -1), pipe.lrange(from_keys[0], 0, -1)
                    ttl = max(pipe.ttl(into_keys[0]), pipe.ttl(from_keys[0]), self.record_exp)
                    merged = self._merged_log(into_raw + from_raw, from_id)
                    slots = self.domain.slots if self.domain else []
                    for event in carried_state(self._events(into_raw), self._events(from_raw), slots):
                        text = _canonical(event).encode()
                        merged.append((_digest(text), text, False))
                    pipe.multi()
                    pipe.delete(*from_keys, *into_keys)
                    pipe.rpush(into_keys[0], *[text for _, text, _ in merged])
                    pipe.rpush(into_keys[1], 0, *[i for i, (_, _, start) in enumerate(merged) if start and i > 0])
                    pipe.sadd(into_keys[2], *[digest for digest, _, _ in merged])
                    if ttl > 0:
                        for key in into_keys:
                            pipe.expire(key, ttl)
                    pipe.execute()
                    return True
                except redis_lib.WatchError:
                    continue

    @staticmethod
    def _events(stored: List[bytes]) -> List[Event]:
        found = (_event_from_dict(ujson.loads(text)) for text in stored)
        return [event for event in found if event is not None]

    @staticmethod
    def _merged_log(stored: List[bytes], from_id: Text) -> List[tuple]:
        """(digest, json, starts session) of the merged conversation's events."""
        rows = []
        for text in stored:
            data = ujson.loads(text)
            start = data.get("event") == "action" and data.get("name") == ACTION_SESSION_START_NAME
            rows.append((data.get("timestamp") or 0.0, text, start))
        rows.sort(key=lambda row: row[0])  # stable: ties keep their order
        marker = _canonical(SlotSet(MERGED_FROM_SLOT, from_id, timestamp=time.time())).encode()
        merged = [(_digest(text), text, start) for _, text, start in rows]
        merged.append((_digest(marker), marker, False))
        return merged
