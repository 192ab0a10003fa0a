"""Web chat connector (``webchat``): chat page, embeddable widget, REST, socket.io, live events.

Routes under ``/webhooks/webchat/``::

    GET  /                     health (the base's)
    GET  /chat                 the chat as a full page
    GET  /widget.js            the widget: one <script> tag embeds it (plus /widget.css)
    GET  /config               what the widget needs from the server (deep-link targets, ...)
    POST /session              a new visitor: {"visitor": id, "sender": token}
    POST /webhook              synchronous REST, like Rasa's ``rest`` channel:
                               {"sender": <visitor token>, "message", "message_id"?, "metadata"?,
                                "customer_ref"?, "signature"?, "expires"?}
                               -> [{"recipient_id", "text", "buttons", "image", "custom", ...}]
    GET  /events?sender=<tok>  server-sent events: what the bot sends on its own (agent
                               replies, proactive messages) to a widget that talks REST

and socket.io on ``socketio_path`` (default ``/socket.io``, at the server root) speaking
the Rasa webchat protocol (``session_request`` -> ``session_confirm``, ``user_uttered``
-> ``bot_uttered``), so existing Rasa widgets work as is: the ``session_id`` they keep
is the visitor token the server confirmed.

Identity. A browser proves it holds its visitor id with the visitor token
(``connectors.webchat.visitors``). A visitor is anonymous unless the host page
passes a signed identity, ``customer_ref`` + ``expires`` + ``signature`` =
``identity.sign_web_identity(customer_ref, secret, expires)`` with the secret in
``WEBCHAT_IDENTITY_SECRET``; it counts for the message that carries it only.

Buttons. Typed text starting with ``/`` only reaches Rasa as an intent if it is a
payload the bot offered this customer (remembered for a day) or one of
``allowed_payloads`` (default ``/greet`` and ``/link_channel``).

Browsers on other sites reach the chat only from ``THREADLINE_CORS_ORIGINS``.
"""
import asyncio
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional

from rasa.core.channels.channel import OutputChannel, UserMessage
from rasa.shared.constants import INTENT_MESSAGE_PREFIX
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import server
from threadline import redis_client
from connectors.base import (
    KIND_BUTTON,
    KIND_TEXT,
    BadPayload,
    Delivery,
    Envelope,
    Inbound,
    Outcome,
    ThreadlineInput,
    run_sync,
)
from connectors.webchat.fanout import Presence
from connectors.webchat.live import LiveTransports
from connectors.webchat.outputs import (
    CHANNEL,
    LiveConnections,
    WebchatPushOutput,
    WebchatReplyCollector,
    WebchatSocketOutput,
)
from connectors.webchat.visitors import (
    cache_replies,
    cached_replies,
    new_visitor,
    token_problem,
    visitor_from_token,
    was_offered,
)

logger = logging.getLogger(__name__)

IDENTITY_SECRET_ENV = "WEBCHAT_IDENTITY_SECRET"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "webchat"
CLIENT_MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_TEXT_CHARS = 4096
MAX_REF_CHARS = 256
DEFAULT_ALLOWED_PAYLOADS = ("/greet", "/link_channel")
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


def _expiry(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


class WebDelivery(Delivery):
    """A web chat delivery: REST (replies collected for the response) or socket.io."""

    def __init__(self, inbound: Inbound, envelopes: List[Envelope], transport: str) -> None:
        super().__init__(inbound, envelopes)
        self.transport = transport
        self.replies: Optional[List[Dict[str, Any]]] = None


class WebchatInput(LiveTransports, ThreadlineInput):
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
        self.identity_secret = identity_secret or self.settings.get_raw(IDENTITY_SECRET_ENV)
        self.allowed_payloads = frozenset(allowed_payloads)
        self.live = LiveConnections(Presence(self.redis_client, self.keys))
        self.live.bot_message_evt = self.config["bot_message_evt"]
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
        self.cors_origins = self.settings.cors_origins
        self._app: Any = None

    # ------------------------------------------------------------------ pipeline hooks

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """Always true here: the web chat is public; ``parse`` checks the visitor token."""
        return True

    def parse(self, inbound: Inbound, payload: Any) -> WebDelivery:
        """One REST message: ``{"sender", "message", ...}``."""
        if not isinstance(payload, dict):
            raise BadPayload("expected a JSON object with sender and message")
        return WebDelivery(inbound, [self.envelope_from(payload, TRANSPORT_REST)], TRANSPORT_REST)

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
        sender = visitor_id or visitor_from_token(data.get("sender"))
        if sender is None:
            raise BadPayload(token_problem(data.get("sender")))
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            raise BadPayload("message must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadPayload(f"message is longer than {MAX_TEXT_CHARS} characters")
        client = data.get("metadata")
        if client is None:
            client = data.get("customData")
        if isinstance(client, str):
            try:
                client = json.loads(client)
            except ValueError:
                client = None
        client = dict(client) if isinstance(client, dict) else {}
        ref, signature, expires = self._signed_identity(data, client, signed or {})
        for key in ("customer_ref", "signature", "expires"):
            client.pop(key, None)
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
            signature_expires=expires,
            extra=extra,
        )

    def _signed_identity(self, *sources: Dict[str, Any]):
        """``(customer_ref, signature, expires)`` from the first source that has them.

        Checked by ``identity.resolve``; ignored (anonymous) when signed identities are off.
        """
        for source in sources:
            ref = _optional_str(source.get("customer_ref"), MAX_REF_CHARS)
            signature = source.get("signature")
            if ref and isinstance(signature, str):
                break
        else:
            return None, None, None
        if not self.identity_secret:
            logger.info("webchat: signed identity ignored, %s is not set", IDENTITY_SECRET_ENV)
            return None, None, None
        expires = _expiry(source.get("expires"))
        if expires is None:
            logger.warning("webchat: signed identity without a valid expiry; the visitor stays anonymous")
            return None, None, None
        return ref, signature, expires

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

    def output_channel_for(self, delivery: Delivery, envelope: Envelope) -> OutputChannel:
        """Replies to a socket.io message go to its room; to a REST message, into the response."""
        if getattr(delivery, "transport", TRANSPORT_REST) == TRANSPORT_SOCKET:
            return WebchatSocketOutput(
                self.config, self.sender, self.live, visitor_id=envelope.channel_user_id, redis=self._redis
            )
        collector = WebchatReplyCollector(
            self.config, self.sender, visitor_id=envelope.channel_user_id, redis=self._redis
        )
        delivery.replies = collector.messages
        return collector

    async def handle_envelope(
        self, delivery: Delivery, envelope: Envelope, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Outcome:
        """The base's handling, plus replaying a REST message's replies to a client's retry."""
        outcome = await super().handle_envelope(delivery, envelope, on_new_message)
        if getattr(delivery, "transport", None) != TRANSPORT_REST:
            return outcome
        redis = self.redis_client()
        if outcome.status == "duplicate":
            delivery.replies = await run_sync(cached_replies, envelope.message_id, redis)
        elif delivery.replies is not None:
            await run_sync(cache_replies, envelope.message_id, delivery.replies, redis)
        return outcome

    def build_response(self, delivery: Delivery) -> HTTPResponse:
        """The replies, as Rasa's REST channel returns them (or the base's error)."""
        if self.must_resend(delivery) is not None:
            return super().build_response(delivery)
        return response.json(getattr(delivery, "replies", None) or [])

    # ------------------------------------------------------------------------- routes

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The base's routes and ours, grouped with the socket.io server's blueprint."""
        routes = super().blueprint(on_new_message)
        return Blueprint.group(routes, self._socket_blueprint(on_new_message))

    def register_routes(self, blueprint: Blueprint, on_new_message: Any) -> None:
        """The chat page, the widget's files, its config, visitor sessions and the event stream."""

        @blueprint.listener("before_server_start")
        async def keep_app(app: Any, _: Any) -> None:
            self._app = app

        @blueprint.listener("after_server_start")
        async def join_the_replicas(app: Any, _: Any) -> None:
            # Other replicas' messages for this process's event streams; this
            # replica's heartbeat, which makes its connections count.
            presence = self.live.presence
            self._fanout_tasks = [
                asyncio.create_task(presence.listen_streams(redis_client.redis_url(), self.live.deliver_local)),
                asyncio.create_task(presence.keep_alive()),
            ]

        @blueprint.listener("before_server_stop")
        async def end_streams(*_: Any) -> None:
            self.live.close_streams()
            for task in getattr(self, "_fanout_tasks", ()):
                task.cancel()
            try:
                await run_sync(self.live.presence.forget_replica)
            except Exception:  # Redis already gone: the heartbeat expires by itself
                pass

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

        @blueprint.route("/session", methods=["POST"], name="session")
        async def session(request: Request) -> HTTPResponse:
            limited = await self.check_source(server.client_address(request))
            if limited is not None:
                return limited
            return response.json(new_visitor(), headers={"Cache-Control": "no-store"})

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
            "session_path": "session",
        }

    def _static_response(self, name: str, headers: Dict[str, str]) -> HTTPResponse:
        return response.raw(
            self.static[name],
            content_type=STATIC_FILES[name],
            headers={"X-Content-Type-Options": "nosniff", **headers},
        )
