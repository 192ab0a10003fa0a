"""What the desk does to a customer's conversation, through the rasa server's own agent.

The desk runs inside the rasa server, so it uses ``app.ctx.agent`` directly
rather than the HTTP API: the same tracker store, and the same lock store as
message handling, so an agent's event never interleaves with a customer
message being processed. Events are appended the way Rasa's
``POST /conversations/{id}/tracker/events`` does, and a ``BotUttered`` is
also delivered, like that route's ``execute_side_effects``.

Messages go where the customer is now: a call they are on (spoken at the
caller's next turn, ``connectors.voice.live``), else the channel they wrote on
most recently that the desk can send to (``connectors.registry``), never to a
caller id matched to someone else's customer. Every message is recorded with
its real delivery state (sent, queued and why, or failed and why), which is
what the desk shows.
"""
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from rasa.shared.core.events import (
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SlotSet,
)
from rasa.shared.core.trackers import DialogueStateTracker

from connectors import consent, registry
from connectors.base import run_sync
from connectors.voice import live
from threadline import identity
from threadline.db.cases import CaseInfo
from threadline.message import Origin

logger = logging.getLogger(__name__)

JOINED = "{agent} from our team has joined the conversation."
RETURNED = "You're back with Threadline's assistant. Is there anything else I can help with?"
CLOSED = "Our team has closed case {case}. I'm here if you need anything else."


class DeliveryError(Exception):
    """The message could not be delivered; ``delivery`` says where it was tried and why."""

    def __init__(self, delivery: "Delivered") -> None:
        super().__init__(delivery.describe())
        self.delivery = delivery
        self.unreachable = delivery.channel is None


@dataclass(frozen=True)
class Delivered:
    """What happened to one message from the desk: sent, queued (and why), or failed (and why)."""

    state: str  # sent | queued | failed
    channel: Optional[str] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Sent, or on its way."""
        return self.state != "failed"

    def describe(self) -> str:
        """What the agent reads: "Sent on WhatsApp.", "Queued: ...", "Not sent: ..."."""
        where = f" on {self.channel}" if self.channel else ""
        if self.state == "sent":
            return f"Sent{where}."
        if self.state == "queued":
            return f"Queued{where}: {self.reason}."
        return f"Not sent{where}: {self.reason}."

    def as_metadata(self) -> Dict[str, Any]:
        """How the message's delivery is kept with it in the conversation."""
        return {"delivery": self.state, "delivery_channel": self.channel, "delivery_reason": self.reason}


def _redis() -> Any:
    from threadline.redis_client import get_client

    return get_client()


class Conversation:
    """One customer's conversation, as the desk reads and changes it."""

    def __init__(self, app: Any, customer_ref: str) -> None:
        self.app = app
        self.customer_ref = customer_ref

    @property
    def agent(self) -> Any:
        """Rasa's agent (tracker store, lock store, domain)."""
        return self.app.ctx.agent

    async def history(self) -> List[Event]:
        """Every event of every session (the whole cross-channel timeline)."""
        tracker = await self.agent.tracker_store.retrieve_full_tracker(self.customer_ref)
        return list(tracker.events) if tracker else []

    async def deliver(self, message: BotUttered) -> Delivered:
        """Send a desk message where the customer is now (see the module docstring)."""
        redis = _redis()
        call = await run_sync(live.live_call, redis, self.customer_ref)
        if call is not None and call.may_hear_personal_data:
            await run_sync(live.queue_message, redis, call, message.message())
            return Delivered("queued", registry.channel_label(self.app, call.channel),
                             "it is spoken at the caller's next turn")
        channels = await run_sync(identity.channels_by_recency, self.customer_ref, redis)
        tried = []
        for channel in channels:
            output = registry.output_channel(self.app, channel)
            known = await run_sync(identity.trust_of, self.customer_ref, channel, redis)
            if output is None or (known is not None and known.origin == Origin.CALLER_ID.value):
                tried.append(channel)
                continue
            await output.send_response(self.customer_ref, message.message())
            report = getattr(output, "last_report", None)
            label = registry.channel_label(self.app, channel)
            if report is not None and not report.ok:
                return Delivered("failed", label, "; ".join(consent.describe_failure(e) for e in report.errors))
            if report is not None and report.queued:
                return Delivered("queued", label, report.queued)
            return Delivered("sent", label)
        reason = "the customer has no channel the desk can send to"
        if tried:
            reason += f" (tried {', '.join(tried)})"
        return Delivered("failed", None, reason)

    async def record(self, events: List[Event], deliver: Optional[BotUttered] = None,
                     required: bool = False) -> Optional[Delivered]:
        """Append ``events`` under the conversation's lock; deliver ``deliver`` first.

        The delivered message is recorded after ``events`` with how it went
        (``delivery`` in its metadata), even when it failed, so the desk's
        timeline shows it. With ``required`` a failed delivery raises
        ``DeliveryError`` (after recording).
        """
        async with self.agent.lock_store.lock(self.customer_ref):
            tracker = await self.tracker()
            delivered = None
            if deliver is not None:
                delivered = await self.deliver(deliver)
                deliver.metadata = {**(deliver.metadata or {}), **delivered.as_metadata()}
                events = events + [deliver]
            for event in events:
                tracker.update(event, self.agent.domain)
            await self.agent.tracker_store.save(tracker)
        if required and delivered is not None and not delivered.ok:
            raise DeliveryError(delivered)
        return delivered

    async def tracker(self) -> DialogueStateTracker:
        """The conversation's latest session, or a new tracker for a customer never seen (call under its lock)."""
        tracker = await self.agent.tracker_store.retrieve(self.customer_ref)
        if tracker is None:
            slots = self.agent.domain.slots if self.agent.domain else []
            tracker = DialogueStateTracker(self.customer_ref, slots)
        return tracker

    # ------------------------------------------------------------ case steps

    async def take_over(self, case: CaseInfo) -> Delivered:
        """The agent accepted: pause the bot and tell the customer who joined."""
        joined = BotUttered(JOINED.format(agent=case.agent), metadata={"agent": case.agent, "case": case.id})
        return await self.record([ConversationPaused()], deliver=joined)

    async def reply(self, case: CaseInfo, text: str) -> Delivered:
        """Send the agent's message; recorded as the bot's turn with ``{"agent": name}``."""
        message = BotUttered(text, metadata={"agent": case.agent, "case": case.id})
        return await self.record([], deliver=message, required=True)

    async def give_back(self, case: CaseInfo, was_paused: bool) -> Delivered:
        """The case ended: the bot takes over again, with every slot as it was."""
        events: List[Event] = [ConversationResumed()] if was_paused else []
        events.append(SlotSet("handoff_case", None))
        text = RETURNED if case.outcome == "handed_back" else CLOSED.format(case=case.id)
        notice = BotUttered(text, metadata={"case": case.id, "handoff": case.outcome})
        return await self.record(events, deliver=notice)
