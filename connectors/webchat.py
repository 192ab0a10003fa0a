"""Web chat connector (``webchat``): chat page, embeddable widget, REST, socket.io, live events.

Routes under ``/webhooks/webchat/``::

    GET  /                     health (the base's)
    GET  /chat                 the chat as a full page
    GET  /widget.js            the widget: one <script> tag embeds it (plus /widget.css)
    GET  /config               what the widget needs from the server (deep-link targets, ...)
    POST /webhook              synchronous REST, like Rasa's ``rest`` channel:
                               {"sender", "message", "message_id"?, "metadata"?,
                                "customer_ref"?, "signature"?}
                               -> [{"recipient_id", "text", "buttons", "image", "custom", ...}]
    GET  /events?sender=<id>   server-sent events: what the bot sends on its own (proactive
                               messages, agent replies) to a widget that talks REST

and socket.io on ``socketio_path`` (default ``/socket.io``, at the server root) speaking
the Rasa webchat protocol (``session_request`` -> ``session_confirm``, ``user_uttered``
-> ``bot_uttered``), so existing Rasa widgets (rasa-webchat, Botfront's) work as is.

Identity. The browser's visitor id (REST ``sender``, the socket.io ``session_id``) is
the channel user id, so it must be unguessable: 16-128 letters, digits, ``-`` or
``_``. A visitor is anonymous unless the host page passes a signed identity,
``customer_ref`` + ``signature`` = ``identity.sign_web_identity(customer_ref, secret)``
with the secret in ``WEBCHAT_IDENTITY_SECRET``; without that variable signed identities
are simply off and the chat stays anonymous.

Buttons. A web client is free to type anything, so typed text starting with ``/``
only reaches Rasa as an intent if it is a payload the bot offered this customer
(remembered for a day) or one of ``allowed_payloads`` (default ``/greet`` and
``/link_channel``, which the widget offers itself); anything else is neutralised by
the base.

Delivery. Replies to a REST message are the HTTP response; replies to a socket.io
message go to the visitor's room. Messages the bot sends on its own
(``get_output_channel``) go to the visitor's sockets and event streams, or, when
none is connected, wait in a per-visitor Redis outbox (``webchat:outbox:{visitor}``,
the last 50, a week) until one connects.

credentials.yml (every key optional; values may also come from the environment)::

    connectors.webchat.WebchatInput:
      identity_secret_env: WEBCHAT_IDENTITY_SECRET
      # socketio_path: /socket.io          (WEBCHAT_SOCKETIO_PATH)
      # telegram_bot: ThreadlineBot        (WEBCHAT_TELEGRAM_BOT, for t.me deep links)
      # whatsapp_number: "+14155550100"    (WEBCHAT_WHATSAPP_NUMBER, for wa.me deep links)
      # title: Threadline                  (WEBCHAT_TITLE)
      # allowed_payloads: [/greet, /link_channel]
"""
import asyncio
import inspect
import json
import logging
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set

from rasa.core.channels.channel import CollectingOutputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOOutput
from rasa.shared.constants import INTENT_MESSAGE_PREFIX
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from connectors.base import (
    KIND_BUTTON,
    KIND_TEXT,
    BadPayload,
    Envelope,
    Outcome,
    ThreadlineInput,
    ThreadlineOutput,
    run_sync,
)
from connectors.outbound import OutboundSender, redis_key
from threadline import identity, settings

logger = logging.getLogger(__name__)

CHANNEL = "webchat"
IDENTITY_SECRET_ENV = "WEBCHAT_IDENTITY_SECRET"
STATIC_DIR = Path(__file__).resolve().parent / "static" / "webchat"
VISITOR_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
CLIENT_MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_TEXT_CHARS = 4096
MAX_REF_CHARS = 256
DEFAULT_ALLOWED_PAYLOADS = ("/greet", "/link_channel")
OFFERED_TTL = 24 * 3600
REPLY_CACHE_TTL = 600
OUTBOX_LIMIT = 50
OUTBOX_TTL = 7 * 24 * 3600
STREAM_PING_SECONDS = 20.0
TRANSPORT_REST = "rest"
TRANSPORT_SOCKET = "socketio"

STATIC_FILES = {
    "chat.html": "text/html; charset=utf-8",
    "widget.js": "application/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
}
CHAT_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src * data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def new_visitor_id() -> str:
    """A fresh unguessable visitor id (32 hex characters)."""
    return uuid.uuid4().hex


def visitor_room(visitor_id: str) -> str:
    """The socket.io room of a visitor (prefixed so it never equals a socket id)."""
    return "visitor:" + visitor_id


def _offered_key(customer_id: str) -> str:
    return redis_key(CHANNEL, "offered", customer_id)


def _outbox_key(visitor_id: str) -> str:
    return redis_key(CHANNEL, "outbox", visitor_id)


def _reply_cache_key(message_id: str) -> str:
    return redis_key(CHANNEL, "replies", message_id)


def remember_offered(customer_id: str, payloads: Iterable[str], redis: Any) -> None:
    """Remember button payloads the bot offered ``customer_id`` (blocking)."""
    payloads = [p for p in payloads if isinstance(p, str) and p]
    if not payloads:
        return
    pipe = redis.pipeline(transaction=False)
    pipe.sadd(_offered_key(customer_id), *payloads)
    pipe.expire(_offered_key(customer_id), OFFERED_TTL)
    pipe.execute()


def was_offered(customer_id: str, payload: str, redis: Any) -> bool:
    """Whether the bot offered ``payload`` to ``customer_id`` within the last day."""
    return bool(redis.sismember(_offered_key(customer_id), payload))


def outbox_push(visitor_id: str, customer_id: str, message: Dict[str, Any], redis: Any) -> None:
    """Keep a bot response for a visitor who is not connected right now."""
    key = _outbox_key(visitor_id)
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, json.dumps({"customer_id": customer_id, "message": message}))
    pipe.ltrim(key, -OUTBOX_LIMIT, -1)
    pipe.expire(key, OUTBOX_TTL)
    pipe.execute()


def outbox_take(visitor_id: str, redis: Any) -> List[Dict[str, Any]]:
    """Remove and return the responses waiting for ``visitor_id``, oldest first."""
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(_outbox_key(visitor_id), 0, -1)
    pipe.delete(_outbox_key(visitor_id))
    raw, _ = pipe.execute()
    items = []
    for item in raw:
        try:
            items.append(json.loads(item))
        except ValueError:
            logger.warning("webchat: unreadable outbox entry for a visitor dropped")
    return items


def _button_payloads(buttons: Any) -> List[str]:
    if not isinstance(buttons, list):
        return []
    return [b["payload"] for b in buttons if isinstance(b, dict) and isinstance(b.get("payload"), str)]


def _string_list(value: Any) -> List[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(part).strip() for part in value if str(part).strip()]
    return []


def _optional_str(value: Any, limit: int) -> Optional[str]:
    if isinstance(value, str) and value.strip() and len(value) <= limit:
        return value.strip()
    return None


class LiveConnections:
    """Who is connected right now: socket.io rooms and server-sent event streams.

    Lives in the rasa server process, like Rasa's own socket.io channel: with several
    server processes a visitor is only reachable live on the one they are connected to
    (the rest goes to the outbox).
    """

    def __init__(self) -> None:
        self.sio: Optional[AsyncServer] = None
        self.bot_message_evt = "bot_uttered"
        self._streams: Dict[str, Set[asyncio.Queue]] = {}

    def socket_connected(self, visitor_id: str) -> bool:
        """Whether a socket.io client is in the visitor's room."""
        if self.sio is None:
            return False
        try:
            return any(True for _ in self.sio.manager.get_participants("/", visitor_room(visitor_id)))
        except KeyError:  # nobody connected to the namespace at all
            return False

    def stream_connected(self, visitor_id: str) -> bool:
        """Whether an event stream of the visitor is open."""
        return bool(self._streams.get(visitor_id))

    def subscribe(self, visitor_id: str) -> asyncio.Queue:
        """A queue receiving the visitor's live messages (lists of REST-shaped dicts)."""
        queue: asyncio.Queue = asyncio.Queue()
        self._streams.setdefault(visitor_id, set()).add(queue)
        return queue

    def unsubscribe(self, visitor_id: str, queue: asyncio.Queue) -> None:
        """Forget a closed event stream."""
        queues = self._streams.get(visitor_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._streams[visitor_id]

    def publish(self, visitor_id: str, messages: List[Dict[str, Any]]) -> None:
        """Hand messages to every open event stream of the visitor."""
        for queue in self._streams.get(visitor_id, ()):
            queue.put_nowait(messages)

    def close_streams(self) -> None:
        """Ask every open event stream to end (server shutdown)."""
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)


class _WebOutput(ThreadlineOutput):
    """What the web outputs share: a fixed visitor for replies, offered buttons remembered.

    Replies go to the visitor who wrote (``visitor_id``), not to whichever web session
    of the customer wrote last; without one, the identity index decides.
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

    What ``trigger_intent?output_channel=webchat`` (and ``latest``) uses.
    """

    channel = CHANNEL

    def __init__(self, config: Dict[str, str], sender: OutboundSender, live: LiveConnections, redis: Any = None):
        ThreadlineOutput.__init__(self, config, sender, redis)
        self.live = live

    async def deliver(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Deliver one bot response to the customer ``recipient_id``'s web visitor."""
        visitor = await run_sync(identity.address_for, recipient_id, CHANNEL, self.redis_client())
        if not visitor:
            logger.warning("webchat: customer %s has no web visitor; message not delivered", recipient_id)
            await self.sender.record_failure(f"webchat:{recipient_id}", message, "no web visitor for this customer")
            return
        delivered = False
        if self.live.socket_connected(visitor):
            output = WebchatSocketOutput(self.config, self.sender, self.live, visitor_id=visitor, redis=self._redis)
            await output.send_response(recipient_id, dict(message))
            delivered = True
        if self.live.stream_connected(visitor):
            collector = WebchatReplyCollector(self.config, self.sender, visitor_id=visitor, redis=self._redis)
            await collector.send_response(recipient_id, dict(message))
            self.live.publish(visitor, collector.messages)
            delivered = True
        if not delivered:
            await run_sync(outbox_push, visitor, recipient_id, message, self.redis_client())

    # Callers outside Rasa's processor (the agent desk) may use these directly;
    # each becomes one response so the web keeps its buttons and images.

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


class WebchatInput(ThreadlineInput):
    """The web chat: chat page and widget, REST webhook, socket.io and live events."""

    channel = CHANNEL
    channel_label = "the web chat"
    credential_env = {
        "socketio_path": "WEBCHAT_SOCKETIO_PATH",
        "user_message_evt": "WEBCHAT_USER_MESSAGE_EVT",
        "bot_message_evt": "WEBCHAT_BOT_MESSAGE_EVT",
        "telegram_bot": "WEBCHAT_TELEGRAM_BOT",
        "whatsapp_number": "WEBCHAT_WHATSAPP_NUMBER",
        "title": "WEBCHAT_TITLE",
    }
    credential_defaults = {
        "socketio_path": "/socket.io",
        "user_message_evt": "user_uttered",
        "bot_message_evt": "bot_uttered",
        "telegram_bot": "",
        "whatsapp_number": "",
        "title": "Threadline",
    }

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "WebchatInput":
        """Build the channel; the identity secret is read from the environment now.

        ``identity_secret_env`` may only name ``WEBCHAT_IDENTITY_SECRET``: that is the
        variable ``identity.resolve`` verifies signatures with.
        """
        credentials = dict(credentials or {})
        secret_env = credentials.pop("identity_secret_env", None) or IDENTITY_SECRET_ENV
        if secret_env != IDENTITY_SECRET_ENV:
            raise RasaException(
                f"webchat: identity_secret_env must be {IDENTITY_SECRET_ENV} (identity.resolve "
                f"verifies signed web identities with it), not {secret_env!r}."
            )
        allowed = _string_list(credentials.pop("allowed_payloads", None)) or list(DEFAULT_ALLOWED_PAYLOADS)
        return cls(cls.load_config(credentials), allowed_payloads=allowed)

    def __init__(
        self,
        config: Dict[str, str],
        *,
        identity_secret: Optional[str] = None,
        allowed_payloads: Iterable[str] = DEFAULT_ALLOWED_PAYLOADS,
        **kwargs: Any,
    ) -> None:
        config = {**self.credential_defaults, **config}
        super().__init__(config, **kwargs)
        self.identity_secret = identity_secret or settings.env(IDENTITY_SECRET_ENV) or None
        self.allowed_payloads = frozenset(allowed_payloads)
        self.live = LiveConnections()
        self.live.bot_message_evt = self.config["bot_message_evt"]
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
        self._app: Any = None

    # ------------------------------------------------------------------ pipeline hooks

    def verify(self, request: Request, body: bytes) -> bool:
        """Always true: the web chat is public. Trust comes from signed identities."""
        return True

    def parse(self, request: Request, payload: Any) -> List[Envelope]:
        """One REST message: ``{"sender", "message", ...}``."""
        if not isinstance(payload, dict):
            raise BadPayload("expected a JSON object")
        return [self.envelope_from(payload, TRANSPORT_REST)]

    def envelope_from(
        self,
        data: Dict[str, Any],
        transport: str,
        visitor_id: Optional[str] = None,
        signed: Optional[Dict[str, Any]] = None,
    ) -> Envelope:
        """An envelope from a REST body or a socket.io ``user_uttered`` event.

        Client metadata (``metadata``, or ``customData`` as rasa-webchat sends it) is
        kept under ``client_metadata``; its ``language``/``locale`` becomes the locale.
        A signed identity may come at the top level, in the metadata, or in ``signed``
        (the socket.io ``auth``).
        """
        sender = visitor_id or data.get("sender")
        if not isinstance(sender, str) or not VISITOR_ID_RE.match(sender):
            raise BadPayload("sender must be an unguessable visitor id: 16-128 letters, digits, '-' or '_'")
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            raise BadPayload("message must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadPayload(f"message longer than {MAX_TEXT_CHARS} characters")
        client = data.get("metadata")
        if client is None:
            client = data.get("customData")
        if isinstance(client, str):
            try:
                client = json.loads(client)
            except ValueError:
                client = None
        client = dict(client) if isinstance(client, dict) else {}
        ref, signature = self._signed_identity(data, client, signed or {})
        client.pop("customer_ref", None)
        client.pop("signature", None)
        client_id = data.get("message_id")
        if isinstance(client_id, str) and CLIENT_MESSAGE_ID_RE.match(client_id):
            message_id = f"{sender}:{client_id}"  # per visitor: naive clients count from 1
        else:
            message_id = uuid.uuid4().hex
        extra: Dict[str, Any] = {"transport": transport}
        if client:
            extra["client_metadata"] = client
        return Envelope(
            channel=self.name(),
            channel_user_id=sender,
            message_id=message_id,
            text=text,
            kind=KIND_TEXT,
            locale=_optional_str(client.get("locale") or client.get("language"), 35),
            signed_customer_id=ref,
            signature=signature,
            extra=extra,
        )

    def _signed_identity(self, *sources: Dict[str, Any]):
        """``(customer_ref, signature)`` from the first source that has both, if valid."""
        for source in sources:
            ref = _optional_str(source.get("customer_ref"), MAX_REF_CHARS)
            signature = source.get("signature")
            if ref and isinstance(signature, str):
                break
        else:
            return None, None
        if not self.identity_secret:
            logger.info("webchat: signed identity ignored, %s is not set", IDENTITY_SECRET_ENV)
            return None, None
        if not identity.verify_web_identity(ref, signature, self.identity_secret):
            logger.warning("webchat: invalid identity signature; the visitor stays anonymous")
            return None, None
        return ref, signature

    def message_text(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """Typed ``/payload`` counts as a button click if the bot offered it (or it is allowed)."""
        text = (envelope.text or "").strip()
        if text.startswith(INTENT_MESSAGE_PREFIX) and (
            text in self.allowed_payloads or was_offered(customer_id, text, self.redis_client())
        ):
            envelope.kind = KIND_BUTTON
            envelope.payload = text
        return super().message_text(envelope, customer_id)

    def get_output_channel(self) -> OutputChannel:
        """The output for messages the bot sends on its own (see ``WebchatPushOutput``)."""
        return WebchatPushOutput(self.config, self.sender, self.live, redis=self._redis)

    def output_channel_for(self, request: Request, envelope: Envelope) -> OutputChannel:
        """Replies to a socket.io message go to its room; to a REST message, into the response."""
        if envelope.extra.get("transport") == TRANSPORT_SOCKET:
            return WebchatSocketOutput(
                self.config, self.sender, self.live, visitor_id=envelope.channel_user_id, redis=self._redis
            )
        collector = WebchatReplyCollector(
            self.config, self.sender, visitor_id=envelope.channel_user_id, redis=self._redis
        )
        request.ctx.webchat_replies = collector.messages
        return collector

    async def handle_envelope(
        self, request: Request, envelope: Envelope, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Outcome:
        """The base's handling, plus replaying a REST message's replies to a client's retry."""
        outcome = await super().handle_envelope(request, envelope, on_new_message)
        if envelope.extra.get("transport") != TRANSPORT_REST:
            return outcome
        if outcome.status == "duplicate":
            request.ctx.webchat_replies = await run_sync(self._cached_replies, envelope.message_id)
        elif getattr(request.ctx, "webchat_replies", None) is not None:
            await run_sync(self._cache_replies, envelope.message_id, request.ctx.webchat_replies)
        return outcome

    def _cache_replies(self, message_id: str, replies: List[Dict[str, Any]]) -> None:
        self.redis_client().set(_reply_cache_key(message_id), json.dumps(replies), ex=REPLY_CACHE_TTL)

    def _cached_replies(self, message_id: str) -> List[Dict[str, Any]]:
        raw = self.redis_client().get(_reply_cache_key(message_id))
        return json.loads(raw) if raw else []

    def build_response(self, request: Request, outcomes: List[Outcome]) -> HTTPResponse:
        """The replies, as Rasa's REST channel returns them."""
        return response.json(getattr(request.ctx, "webchat_replies", None) or [])

    # ------------------------------------------------------------------------- routes

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The base's routes and ours, grouped with the socket.io server's blueprint."""
        routes = super().blueprint(on_new_message)
        return Blueprint.group(routes, self._socket_blueprint(on_new_message))

    def register_routes(self, blueprint: Blueprint, on_new_message: Any) -> None:
        """The chat page, the widget's files, its config and the live event stream."""

        @blueprint.listener("before_server_start")
        async def keep_app(app: Any, _: Any) -> None:
            self._app = app

        @blueprint.listener("before_server_stop")
        async def end_streams(*_: Any) -> None:
            self.live.close_streams()

        @blueprint.middleware("request")
        async def browsers_to_chat(request: Request) -> Optional[HTTPResponse]:
            # GET / stays the JSON health check, except for a browser asking for a page.
            route = getattr(request, "route", None)
            if (
                request.method == "GET"
                and route is not None
                and route.name.endswith(".health")
                and "text/html" in request.headers.get("accept", "")
            ):
                return response.redirect(request.path.rstrip("/") + "/chat")
            return None

        @blueprint.route("/chat", methods=["GET"], name="chat_page")
        async def chat_page(_: Request) -> HTTPResponse:
            return self._static_response("chat.html", {"Content-Security-Policy": CHAT_PAGE_CSP})

        @blueprint.route("/widget.js", methods=["GET"], name="widget_js")
        async def widget_js(_: Request) -> HTTPResponse:
            return self._static_response("widget.js", {"Cache-Control": "public, max-age=300"})

        @blueprint.route("/widget.css", methods=["GET"], name="widget_css")
        async def widget_css(_: Request) -> HTTPResponse:
            return self._static_response("widget.css", {"Cache-Control": "public, max-age=300"})

        @blueprint.route("/config", methods=["GET"], name="widget_config")
        async def widget_config(_: Request) -> HTTPResponse:
            return response.json(self.widget_config(), headers={"Cache-Control": "no-cache"})

        @blueprint.route("/events", methods=["GET"], name="events")
        async def events(request: Request) -> Optional[HTTPResponse]:
            return await self.stream_events(request)

    def widget_config(self) -> Dict[str, Any]:
        """What the widget needs to know: title, deep-link targets, signed identities on."""
        number = "".join(ch for ch in self.config["whatsapp_number"] if ch.isdigit())
        return {
            "title": self.config["title"],
            "telegram_bot": self.config["telegram_bot"].lstrip("@") or None,
            "whatsapp_number": number or None,
            "signed_identities": bool(self.identity_secret),
            "link_payload": "/link_channel",
            "socketio_path": self.config["socketio_path"],
        }

    def _static_response(self, name: str, headers: Dict[str, str]) -> HTTPResponse:
        return response.raw(
            self.static[name],
            content_type=STATIC_FILES[name],
            headers={"X-Content-Type-Options": "nosniff", **headers},
        )

    async def stream_events(self, request: Request) -> Optional[HTTPResponse]:
        """Server-sent events for one visitor: waiting outbox messages first, then live ones."""
        visitor = request.args.get("sender")
        if not visitor or not VISITOR_ID_RE.match(visitor):
            return response.json({"error": "sender must be a visitor id"}, status=400)
        queue = self.live.subscribe(visitor)
        try:
            stream = await request.respond(
                content_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            await stream.send(": connected\n\n")
            for item in await run_sync(outbox_take, visitor, self.redis_client()):
                collector = WebchatReplyCollector(self.config, self.sender, visitor_id=visitor, redis=self._redis)
                await collector.send_response(item.get("customer_id", ""), dict(item.get("message") or {}))
                queue.put_nowait(collector.messages)
            while True:
                try:
                    messages = await asyncio.wait_for(queue.get(), STREAM_PING_SECONDS)
                except asyncio.TimeoutError:
                    await stream.send(": ping\n\n")
                    continue
                if messages is None:
                    break
                for message in messages:
                    await stream.send(f"event: bot\ndata: {json.dumps(message)}\n\n")
            await stream.eof()
        finally:
            self.live.unsubscribe(visitor, queue)
        return None

    # ---------------------------------------------------------------------- socket.io

    def _socket_blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        # Rasa's socket.io channel leaves CORS to `rasa run --cors`; so does this one.
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=[], max_http_buffer_size=self.max_body_bytes)
        self.live.sio = sio
        blueprint = SocketBlueprint(sio, self.config["socketio_path"], f"threadline_{self.name()}_socketio", __name__)

        @sio.on("connect")
        async def connect(sid: str, environ: Dict[str, Any], auth: Optional[Dict[str, Any]] = None) -> bool:
            await sio.save_session(sid, {"auth": auth if isinstance(auth, dict) else {}})
            return True

        @sio.on("session_request")
        async def session_request(sid: str, data: Any) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            await self._start_session(sid, requested)

        @sio.on(self.config["user_message_evt"])
        async def user_uttered(sid: str, data: Any) -> None:
            await self._socket_message(sid, data, on_new_message)

        return blueprint

    async def _start_session(self, sid: str, requested: Any) -> str:
        """Put the socket in its visitor's room, confirm the session, flush the outbox."""
        sio = self.live.sio
        visitor = requested if isinstance(requested, str) and VISITOR_ID_RE.match(requested) else new_visitor_id()
        session = await sio.get_session(sid)
        previous = session.get("visitor")
        if previous and previous != visitor:
            await _maybe_await(sio.leave_room(sid, visitor_room(previous)))
        await _maybe_await(sio.enter_room(sid, visitor_room(visitor)))
        session["visitor"] = visitor
        await sio.save_session(sid, session)
        await sio.emit("session_confirm", visitor, room=sid)
        for item in await run_sync(outbox_take, visitor, self.redis_client()):
            output = WebchatSocketOutput(self.config, self.sender, self.live, visitor_id=visitor, redis=self._redis)
            await output.send_response(item.get("customer_id", ""), dict(item.get("message") or {}))
        return visitor

    async def _socket_message(
        self, sid: str, data: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        """Run one ``user_uttered`` event through the base pipeline."""
        if not isinstance(data, dict):
            logger.warning("webchat: socket.io message that is not an object ignored")
            return
        session = await self.live.sio.get_session(sid)
        # The socket's confirmed session wins over a session_id in the message.
        visitor = session.get("visitor") or await self._start_session(sid, data.get("session_id"))
        try:
            envelope = self.envelope_from(data, TRANSPORT_SOCKET, visitor_id=visitor, signed=session.get("auth"))
        except BadPayload as exc:
            logger.warning("webchat: socket.io message ignored: %s", exc)
            return
        request = SimpleNamespace(app=self._app, ctx=SimpleNamespace(), headers={})
        try:
            await self.handle_envelope(request, envelope, on_new_message)  # type: ignore[arg-type]
        except Exception:
            logger.exception("webchat: socket.io message %s failed", envelope.message_id)


async def _maybe_await(result: Any) -> Any:
    # python-socketio 5.8's enter_room/leave_room are plain functions; later
    # releases made them coroutines on the async server.
    if inspect.isawaitable(result):
        return await result
    return result
