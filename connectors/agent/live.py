"""Live updates for the agent desk: conversation events in, server-sent events out.

Two sources publish on Redis channels:

* ``threadline.handoff.notify`` whenever a case changes (the action server
  when it opens one, the desk when an agent acts), on
  ``handoff.desk_channel()``;
* ``DeskEventBroker``, a Rasa event broker, for every customer, bot and agent
  message and every pause/resume, as the tracker store saves them, on
  ``handoff.desk_events_channel()``.

Rasa's tracker store hands each new event to its event broker. The desk
attaches ``DeskEventBroker`` at server start (keeping any broker
endpoints.yml configured, in a ``TeeBroker``), or it can be configured there
directly: ``event_broker: {type: connectors.agent.live.DeskEventBroker}``.
Going through Redis keeps every rasa instance's desk up to date, whichever
instance handled the message.

``DeskHub`` (one per server) follows the case channel always, to keep its
index of open cases, and the busy message channel only while a desk page is
open on that server: a replica nobody watches does not decode every
conversation's messages. It fans each notification out to the open pages,
each seeing only what its agent may see.
"""
import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set

from rasa.core.brokers.broker import EventBroker

from threadline import handoff

logger = logging.getLogger(__name__)

CONVERSATION_EVENTS = {"user", "bot", "pause", "resume"}
SUBSCRIBER_BUFFER = 500
REFRESH_SECONDS = 30
# How often the listener looks up from Redis to follow, or stop following, the message channel.
POLL_SECONDS = 0.25
FOLLOW_TIMEOUT_SECONDS = 5.0


def slim_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """What the desk shows of one tracker event."""
    metadata = event.get("metadata") or {}
    intent = (event.get("parse_data") or {}).get("intent") or {}
    data = event.get("data") or {}
    return {
        "event": event.get("event"),
        "timestamp": event.get("timestamp"),
        "text": event.get("text"),
        "buttons": [b.get("title") for b in data.get("buttons") or [] if isinstance(b, dict)],
        "channel": metadata.get("channel") or event.get("input_channel"),
        "agent": metadata.get("agent"),
        "intent": intent.get("name"),
        "confidence": intent.get("confidence"),
    }


class DeskEventBroker(EventBroker):
    """Publishes the conversation events the desk shows to the desk's Redis channel."""

    def __init__(self, redis: Any = None) -> None:
        self._redis = redis

    @classmethod
    async def from_endpoint_config(cls, broker_config: Any, event_loop: Any = None) -> "DeskEventBroker":
        """Built by Rasa from ``event_broker: {type: connectors.agent.live.DeskEventBroker}``."""
        return cls()

    def publish(self, event: Dict[str, Any]) -> None:
        """Forward a customer/bot/agent message or a pause/resume; ignore the rest."""
        if event.get("event") in CONVERSATION_EVENTS and event.get("sender_id"):
            handoff.publish(
                {"type": "event", "conversation": event["sender_id"], "event": slim_event(event)}, self._redis,
                handoff.desk_events_channel(),
            )

    def is_ready(self) -> bool:
        """Always ready: publishing never blocks on a connection handshake."""
        return True


class TeeBroker(EventBroker):
    """Hands every event to several brokers (the configured one and the desk's)."""

    def __init__(self, *brokers: EventBroker) -> None:
        self.brokers = list(brokers)

    def publish(self, event: Dict[str, Any]) -> None:
        """Publish to each broker; one failing does not stop the others."""
        for broker in self.brokers:
            try:
                broker.publish(event)
            except Exception:
                logger.exception("event broker %s failed", type(broker).__name__)

    def is_ready(self) -> bool:
        """Ready when every broker is."""
        return all(broker.is_ready() for broker in self.brokers)

    async def close(self) -> None:
        """Close every broker."""
        for broker in self.brokers:
            await broker.close()


def _has_desk_broker(broker: Optional[EventBroker]) -> bool:
    if isinstance(broker, DeskEventBroker):
        return True
    return isinstance(broker, TeeBroker) and any(isinstance(b, DeskEventBroker) for b in broker.brokers)


def attach_broker(agent: Any) -> bool:
    """Make the agent's tracker store stream events to the desk (idempotent); False if it cannot."""
    store = getattr(agent, "tracker_store", None)
    if store is None:
        return False
    stores = [store]
    inner = getattr(store, "_tracker_store", None)  # rasa wraps the store in FailSafeTrackerStore
    if inner is not None:
        stores.append(inner)
    current = stores[-1].event_broker
    if not _has_desk_broker(current):
        broker = DeskEventBroker() if current is None else TeeBroker(current, DeskEventBroker())
        for each in stores:
            each.event_broker = broker
    return True


@dataclass(eq=False)
class Subscriber:
    """One open desk page: the queue (``case_id`` None) or one case and its conversation."""

    agent: str
    case_id: Optional[int] = None
    conversation: Optional[str] = None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_BUFFER))

    def offer(self, kind: str, data: Dict[str, Any]) -> None:
        """Queue an update; a page that cannot keep up is told to reload."""
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.queue = asyncio.Queue(SUBSCRIBER_BUFFER)
            self.queue.put_nowait(("resync", {}))


class DeskHub:
    """Subscribes to the desk's Redis channel and fans notifications out to open pages."""

    def __init__(self, redis_url: Optional[str] = None) -> None:
        self._redis_url = redis_url
        self.subscribers: Set[Subscriber] = set()
        # Open cases by conversation id, so a message can be routed to its case.
        self.open_cases: Dict[str, Dict[str, Any]] = {}
        self._task: Optional[asyncio.Task] = None
        # Set once Redis confirmed the subscription to the message channel; clear while not following it.
        self._following = asyncio.Event()

    async def start(self) -> None:
        """Load the open cases and start listening (once)."""
        if self._task is None:
            try:
                await self.refresh()
            except Exception as error:  # no database yet (run `make db`): the listener retries
                logger.warning("agent desk: could not load the open cases yet (%s)", error)
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def refresh(self) -> None:
        """Rebuild the open-case index from the database."""
        from threadline.db import cases

        listed = await asyncio.to_thread(cases.list_cases)
        self.open_cases = {case.customer_ref: handoff.summary(case) for case in listed}

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        from threadline.redis_client import redis_url

        cases, events = handoff.desk_channel(), handoff.desk_events_channel()
        while True:
            client = None
            try:
                url = self._redis_url or await asyncio.to_thread(redis_url)
                client = aioredis.from_url(url)
                pubsub = client.pubsub()
                await pubsub.subscribe(cases)
                following = False
                refresh_at = 0.0
                while True:
                    if time.monotonic() >= refresh_at:
                        # Catch up on whatever changed while not subscribed (or a lost notification).
                        await self.refresh()
                        refresh_at = time.monotonic() + REFRESH_SECONDS
                    if bool(self.subscribers) != following:
                        following = not following
                        if following:
                            await pubsub.subscribe(events)
                        else:
                            self._following.clear()
                            await pubsub.unsubscribe(events)
                    message = await pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    if message.get("type") == "message":
                        self.dispatch(json.loads(message["data"]))
                    elif message.get("type") == "subscribe" and message.get("channel") == events.encode():
                        self._following.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("agent desk: lost the Redis subscription; retrying")
                await asyncio.sleep(1)
            finally:
                self._following.clear()
                if client is not None:
                    await client.close()

    async def following(self, timeout: float = FOLLOW_TIMEOUT_SECONDS) -> bool:
        """Wait until conversation messages reach this hub (a page is subscribed); False if Redis did not confirm."""
        try:
            await asyncio.wait_for(self._following.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            logger.warning("agent desk: Redis did not confirm the message subscription within %.0f s", timeout)
            return False

    def subscribe(self, agent: str, case_id: Optional[int] = None, conversation: Optional[str] = None) -> Subscriber:
        """Register an open page (a case page names its case and conversation)."""
        subscriber = Subscriber(agent, case_id, conversation)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a closed page."""
        self.subscribers.discard(subscriber)

    def dispatch(self, message: Dict[str, Any]) -> None:
        """Route one notification to the pages that may see it."""
        if message.get("type") == "case":
            self._dispatch_case(message)
        elif message.get("type") == "event":
            self._dispatch_event(message)

    def _dispatch_case(self, message: Dict[str, Any]) -> None:
        case = message["case"]
        if case["status"] == "closed":
            if self.open_cases.get(case["customer_ref"], {}).get("id") == case["id"]:
                del self.open_cases[case["customer_ref"]]
        else:
            self.open_cases[case["customer_ref"]] = case
        for subscriber in list(self.subscribers):
            if subscriber.case_id is not None and subscriber.case_id != case["id"]:
                continue
            visible = case["agent"] in (None, subscriber.agent)
            data = case if visible else {k: case[k] for k in ("id", "status", "agent")}
            subscriber.offer("case", {"change": message.get("change"), "case": data})

    def _dispatch_event(self, message: Dict[str, Any]) -> None:
        # A case page follows its conversation even after the case closed (the
        # bot taking over again); the queue only shows conversations with an
        # open case. Neither sees a conversation another agent owns now.
        conversation = message["conversation"]
        case = self.open_cases.get(conversation)
        owner = case["agent"] if case is not None else None
        for subscriber in list(self.subscribers):
            if owner not in (None, subscriber.agent):
                continue
            if subscriber.case_id is not None and subscriber.conversation == conversation:
                subscriber.offer("message", {"case": subscriber.case_id, "event": message["event"]})
            elif subscriber.case_id is None and case is not None:
                subscriber.offer("message", {"case": case["id"], "event": message["event"]})


def sse(kind: str, data: Dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"

