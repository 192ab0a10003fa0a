"""Replies on push channels go out after their turn is stored, and a stored turn's unsent replies are resent.

On a push channel (WhatsApp, Telegram) a reply is a call to the platform's
API. Rasa sends each reply as soon as its action ran, before the turn is
saved: a replica killed in between has sent a reply for a turn that is not
stored, the platform retries the webhook, and the customer gets the reply
twice. So a push channel's turn runs with ``HeldReplies``: Rasa's sends are
held, and sent in order once the tracker store saved the turn, still inside
the conversation's lock (``threadline.rasa_patches`` flushes them there).

The save marks the message's delivery id ``done:<conversation id>`` (stored,
replies not yet confirmed); once they went out it becomes ``sent``. A
redelivery that finds ``done:`` claims a resend (``connectors.dedupe``) and
sends the replies the stored turn holds (``replies_of_turn``): a replica
killed after the save and before its sends loses no reply. What is left is a
kill between the platform accepting a reply and ``sent`` being written, one
Redis write long; no platform API here takes an idempotency key to close it.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

from rasa.core.channels.channel import OutputChannel
from rasa.shared.core.events import BotUttered, Event

USER = "user"
BOT = "bot"
LISTEN = "action_listen"


class HeldReplies:
    """Wraps a push channel's output for one turn: ``send_response`` is held until ``flush``.

    Everything else (its name, for channel-specific responses; a direct
    ``send_text_message``; its other attributes) is the wrapped output's.
    """

    def __init__(self, output: OutputChannel) -> None:
        self.output = output
        self.held: List[Tuple[str, Dict[str, Any]]] = []
        self.sent = 0

    def name(self) -> str:
        """The wrapped channel's name."""
        return self.output.name()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.output, attribute)

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Hold the response until the turn is stored."""
        # Rasa builds each message afresh (BotUttered.message()); the output's
        # dispatch pops its top-level keys, so a shallow copy keeps it whole.
        self.held.append((recipient_id, dict(message)))

    async def flush(self) -> int:
        """Send what is held, in order, each once; the number sent by this call."""
        count = 0
        while self.sent < len(self.held):
            recipient_id, message = self.held[self.sent]
            self.sent += 1  # a send that fails is recorded for replay by the output, not retried here
            await self.output.send_response(recipient_id, message)
            count += 1
        return count


async def flush(output: Any) -> None:
    """Flush ``output`` if it holds replies (any other output: nothing to do)."""
    if isinstance(output, HeldReplies):
        await output.flush()


def replies_of_turn(events: Iterable[Dict[str, Any]], message_id: str) -> Optional[List[Dict[str, Any]]]:
    """The bot messages that answered the customer message ``message_id``, from stored events (dicts).

    They are the ``bot`` events after that ``user`` event, up to the turn's
    ``action_listen`` or the next customer message. None when the message is
    not among ``events``.
    """
    events = list(events)
    start = None
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("event") == USER and event.get("message_id") == message_id:
            start = index
            break
    if start is None:
        return None
    replies = []
    for event in events[start + 1:]:
        kind = event.get("event")
        if kind == USER or (kind == "action" and event.get("name") == LISTEN):
            break
        if kind == BOT:
            bot = Event.from_parameters(event)
            if isinstance(bot, BotUttered):
                replies.append(bot.message())
    return replies
