"""What the desk does to a customer's conversation, through the rasa server's own agent.

The desk runs inside the rasa server, so it uses ``app.ctx.agent`` directly
rather than the HTTP API: the same tracker store, and the same lock store as
message handling, so an agent's event never interleaves with a customer
message being processed. Events are appended the way Rasa's
``POST /conversations/{id}/tracker/events`` does, and a ``BotUttered`` is
also delivered, like that route's ``execute_side_effects``.

Messages go to the channel the customer last wrote on
(``threadline.identity.last_channel``), through that connector's output
channel (``connectors.registry``).
"""
import logging
from typing import Any, List, Optional, Tuple

from rasa.core.channels.channel import OutputChannel
from rasa.shared.core.events import (
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SlotSet,
)
from rasa.shared.core.trackers import DialogueStateTracker

from connectors import registry
from connectors.base import run_sync
from threadline import identity
from threadline.db.cases import CaseInfo

logger = logging.getLogger(__name__)

JOINED = "{agent} from our team has joined the conversation."
RETURNED = "You're back with Threadline's assistant. Is there anything else I can help with?"
CLOSED = "Our team has closed case {case}. I'm here if you need anything else."


class DeliveryError(Exception):
    """The message could not be sent to the customer; nothing was recorded.

    ``unreachable``: the customer's last channel cannot be sent to at all
    (as opposed to a send that failed).
    """

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


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

    async def reply_channel(self) -> Tuple[Optional[str], Optional[OutputChannel]]:
        """The customer's last channel and an output channel for it (None if it cannot send)."""
        channel = await run_sync(identity.last_channel, self.customer_ref)
        return channel, registry.output_channel(self.app, channel)

    async def record(self, events: List[Event], deliver: Optional[BotUttered] = None, required: bool = False) -> bool:
        """Append ``events`` under the conversation's lock; deliver ``deliver`` first.

        ``deliver`` is sent on the customer's last channel and then recorded
        after ``events``. With ``required``, a message that cannot be sent
        raises ``DeliveryError`` and nothing is recorded; otherwise it is
        skipped (and logged). Returns whether the message was sent.
        """
        async with self.agent.lock_store.lock(self.customer_ref):
            tracker = await self._tracker()
            sent = False
            if deliver is not None:
                sent = await self._send(deliver, required)
                if sent:
                    events = events + [deliver]
            for event in events:
                tracker.update(event, self.agent.domain)
            await self.agent.tracker_store.save(tracker)
            return sent

    async def _tracker(self) -> DialogueStateTracker:
        tracker = await self.agent.tracker_store.retrieve(self.customer_ref)
        if tracker is None:
            slots = self.agent.domain.slots if self.agent.domain else []
            tracker = DialogueStateTracker(self.customer_ref, slots)
        return tracker

    async def _send(self, message: BotUttered, required: bool) -> bool:
        channel, output = await self.reply_channel()
        if output is None:
            problem = f"The customer last wrote on {channel or 'an unknown channel'}, which the desk cannot send to."
            if required:
                raise DeliveryError(problem, unreachable=True)
            logger.info("agent desk: %s (%s)", problem, self.customer_ref)
            return False
        try:
            await output.send_response(self.customer_ref, message.message())
        except Exception as exc:
            if required:
                raise DeliveryError(f"Sending on {channel} failed: {exc}") from exc
            logger.exception("agent desk: could not send on %s to %s", channel, self.customer_ref)
            return False
        return True

    # ------------------------------------------------------------ case steps

    async def take_over(self, case: CaseInfo) -> None:
        """The agent accepted: pause the bot and tell the customer who joined."""
        joined = BotUttered(JOINED.format(agent=case.agent), metadata={"agent": case.agent, "case": case.id})
        await self.record([ConversationPaused()], deliver=joined)

    async def reply(self, case: CaseInfo, text: str) -> None:
        """Send the agent's message; recorded as the bot's turn with ``{"agent": name}``."""
        message = BotUttered(text, metadata={"agent": case.agent, "case": case.id})
        await self.record([], deliver=message, required=True)

    async def give_back(self, case: CaseInfo, was_paused: bool) -> None:
        """The case ended: the bot takes over again, with every slot as it was."""
        events: List[Event] = [ConversationResumed()] if was_paused else []
        events.append(SlotSet("handoff_case", None))
        text = RETURNED if case.outcome == "handed_back" else CLOSED.format(case=case.id)
        notice = BotUttered(text, metadata={"case": case.id, "handoff": case.outcome})
        await self.record(events, deliver=notice)
