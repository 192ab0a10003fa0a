"""Where the web chat's messages go: the HTTP reply, a socket.io room, an event stream, the outbox.

``WebchatReplyCollector`` collects a REST message's replies for its HTTP
response; ``WebchatSocketOutput`` emits Rasa webchat ``bot_uttered`` events to
the visitor's room; ``WebchatPushOutput`` is what the bot (and the desk) use to
reach a customer on the web on their own: open sockets and event streams of
the customer's web visitor, else that visitor's outbox in Redis until one
connects.
"""
import asyncio
import logging
from typing import Any, Dict, List, Optional, Set

from rasa.core.channels.channel import CollectingOutputChannel, OutputChannel
from rasa.core.channels.socketio import SocketIOOutput
from socketio import AsyncServer

from connectors.base import NoAddress, ThreadlineOutput, run_sync
from connectors.outbound import OutboundSender, current_report
from connectors.webchat.fanout import SOCKET, STREAM, Presence
from connectors.webchat.visitors import outbox_push, remember_offered, visitor_room
from threadline import identity

logger = logging.getLogger(__name__)

CHANNEL = "webchat"


def _button_payloads(buttons: Any) -> List[str]:
    if not isinstance(buttons, list):
        return []
    return [b["payload"] for b in buttons if isinstance(b, dict) and isinstance(b.get("payload"), str)]


class LiveConnections:
    """Who is connected right now: socket.io rooms and server-sent event streams, on any replica.

    The connections themselves live in the rasa server process that accepted
    them; ``presence`` (``connectors.webchat.fanout``) says across replicas
    whether a visitor has one, and carries stream messages to the replica that
    holds the stream. Socket emits reach other replicas through the socket.io
    server's Redis manager. The ``*_connected`` checks and ``publish`` block on
    Redis: call them through ``run_sync``.
    """

    def __init__(self, presence: Optional[Presence] = None) -> None:
        self.sio: Optional[AsyncServer] = None
        self.bot_message_evt = "bot_uttered"
        self.presence = presence
        self._streams: Dict[str, Set[asyncio.Queue]] = {}

    def socket_connected(self, visitor_id: str) -> bool:
        """Whether a socket.io client of the visitor is connected to any replica."""
        if self.presence is not None:
            return self.presence.connected(visitor_id, SOCKET)
        if self.sio is None:
            return False
        try:
            return any(True for _ in self.sio.manager.get_participants("/", visitor_room(visitor_id)))
        except KeyError:  # nobody connected to the namespace at all
            return False

    def stream_connected(self, visitor_id: str) -> bool:
        """Whether an event stream of the visitor is open on any replica."""
        if self.presence is not None:
            return self.presence.connected(visitor_id, STREAM)
        return bool(self._streams.get(visitor_id))

    def subscribe(self, visitor_id: str) -> asyncio.Queue:
        """A queue receiving the visitor's live messages (lists of REST-shaped dicts); blocking."""
        queue: asyncio.Queue = asyncio.Queue()
        self._streams.setdefault(visitor_id, set()).add(queue)
        if self.presence is not None:
            self.presence.joined(visitor_id, STREAM)
        return queue

    def unsubscribe(self, visitor_id: str, queue: asyncio.Queue) -> None:
        """Forget a closed event stream (blocking)."""
        queues = self._streams.get(visitor_id)
        if queues is not None and queue in queues:
            queues.discard(queue)
            if not queues:
                del self._streams[visitor_id]
            if self.presence is not None:
                self.presence.left(visitor_id, STREAM)

    def deliver_local(self, visitor_id: str, messages: List[Dict[str, Any]]) -> None:
        """Hand messages to the visitor's event streams open in this process."""
        for queue in self._streams.get(visitor_id, ()):
            queue.put_nowait(messages)

    def publish(self, visitor_id: str, messages: List[Dict[str, Any]]) -> None:
        """Hand messages to every open event stream of the visitor, here and on other replicas (blocking)."""
        self.deliver_local(visitor_id, messages)
        if self.presence is not None:
            self.presence.publish_stream(visitor_id, messages)

    def close_streams(self) -> None:
        """Ask every open event stream to end (server shutdown)."""
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)


class _WebOutput(ThreadlineOutput):
    """What the web outputs share: a fixed visitor for replies, offered buttons remembered.

    Replies go to the visitor who wrote (``visitor_id``), not to whichever web
    session of the customer wrote last; without one, the identity index decides.
    """

    channel = CHANNEL

    def __init__(
        self, config: Dict[str, str], sender: OutboundSender, *, visitor_id: Optional[str] = None, redis: Any = None
    ) -> None:
        ThreadlineOutput.__init__(self, config, sender, redis)
        self.visitor_id = visitor_id

    async def address(self, recipient_id: str) -> str:
        """The visitor id to deliver to."""
        return self.visitor_id or await super().address(recipient_id)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        """Remember the payloads (so clicking them is accepted), then send."""
        await run_sync(remember_offered, recipient_id, _button_payloads(buttons), self.redis_client())
        await super().send_text_with_buttons(recipient_id, text, buttons, **kwargs)


class WebchatReplyCollector(_WebOutput, CollectingOutputChannel):
    """Collects replies in Rasa's REST shape; ``recipient_id`` is the visitor id."""

    def __init__(self, config: Dict[str, str], sender: OutboundSender, **kwargs: Any) -> None:
        _WebOutput.__init__(self, config, sender, **kwargs)
        CollectingOutputChannel.__init__(self)

    async def _persist_message(self, message: Dict[str, Any]) -> None:
        message["recipient_id"] = await self.address(message["recipient_id"])
        self.messages.append(message)


class WebchatSocketOutput(_WebOutput, SocketIOOutput):
    """Emits Rasa webchat ``bot_uttered`` events to the visitor's socket.io room."""

    def __init__(
        self, config: Dict[str, str], sender: OutboundSender, live: LiveConnections, **kwargs: Any
    ) -> None:
        _WebOutput.__init__(self, config, sender, **kwargs)
        SocketIOOutput.__init__(self, live.sio, live.bot_message_evt)

    async def _send_message(self, recipient_id: str, response: Any) -> None:
        room = visitor_room(await self.address(recipient_id))
        await self.sio.emit(self.bot_message_evt, response, room=room)

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """Emit a custom payload (its ``data`` if it has one, as Rasa's channel does)."""
        data = json_message.get("data", json_message) if isinstance(json_message, dict) else json_message
        await self._send_message(recipient_id, data)


class _Deliver(OutputChannel):
    """Terminal ``send_response`` of ``WebchatPushOutput`` (after the base's checks)."""

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        await self.deliver(recipient_id, message)  # type: ignore[attr-defined]


class WebchatPushOutput(ThreadlineOutput, _Deliver):
    """Messages the bot sends on its own: to open sockets and streams, else the outbox.

    What ``trigger_intent?output_channel=webchat`` (and the desk) use.
    """

    channel = CHANNEL

    def __init__(self, config: Dict[str, str], sender: OutboundSender, live: LiveConnections, redis: Any = None):
        ThreadlineOutput.__init__(self, config, sender, redis)
        self.live = live

    async def deliver(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Deliver one bot response to the customer ``recipient_id``'s web visitor."""
        visitor = await run_sync(identity.address_for, recipient_id, CHANNEL, self.redis_client())
        if not visitor:
            raise NoAddress("the customer has no web chat visitor")
        delivered = False
        if await run_sync(self.live.socket_connected, visitor):
            output = WebchatSocketOutput(self.config, self.sender, self.live, visitor_id=visitor, redis=self._redis)
            await output.send_response(recipient_id, dict(message))
            delivered = True
        if await run_sync(self.live.stream_connected, visitor):
            collector = WebchatReplyCollector(self.config, self.sender, visitor_id=visitor, redis=self._redis)
            await collector.send_response(recipient_id, dict(message))
            await run_sync(self.live.publish, visitor, collector.messages)
            delivered = True
        if not delivered:
            await run_sync(outbox_push, visitor, recipient_id, message, self.redis_client())
            report = current_report()
            if report is not None:
                report.queued = "the visitor is not connected; it waits for the web chat to open again"

    # Callers outside Rasa's processor may use these directly; each becomes one
    # response so the web keeps its buttons and images.

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Send text."""
        await self.send_response(recipient_id, {"text": text})

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        """Send text with buttons."""
        await self.send_response(recipient_id, {"text": text, "buttons": buttons})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """Send an image."""
        await self.send_response(recipient_id, {"image": image})

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        """Send an attachment."""
        await self.send_response(recipient_id, {"attachment": attachment})

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """Send a custom payload (internal notes are still dropped)."""
        await self.send_response(recipient_id, {"custom": json_message})
