"""The shared base of every Threadline connector.

A connector is one ``ThreadlineInput`` subclass (receiving) and one
``ThreadlineOutput`` subclass (sending). The base owns the pipeline that every
channel runs the same way; a subclass only says how its platform verifies,
encodes and addresses messages.

Receiving, per webhook request (``POST /webhooks/<name>/webhook``)::

    size limit (413) -> verify (403) -> decode (400) -> parse -> for each Envelope, in order:
      dedupe by platform message id (a redelivery is answered 200, not processed again)
      -> identity.resolve -> link code ("link 123456" / "/start 123456") -> record_channel_use
      -> UserMessage(sender_id=<customer id>, metadata={...}) -> on_new_message

Writing a connector::

    class AcmeInput(ThreadlineInput):
        channel = "acme"
        credential_env = {"secret": "ACME_SECRET", "api_base": "ACME_API_BASE"}
        credential_defaults = {"api_base": "https://api.acme.example"}

        def verify(self, request, body) -> bool:      # before anything is parsed
            return constant_time_equals(request.headers.get("X-Acme-Token"), self.config["secret"])

        def parse(self, request, payload) -> list:     # platform payload -> [Envelope]
            return [Envelope(channel="acme", channel_user_id=..., message_id=..., text=...)]

        def get_output_channel(self):
            return AcmeOutput(self.config, sender=self.sender)

    class AcmeOutput(ThreadlineOutput):
        channel = "acme"
        async def send_text_message(self, recipient_id, text, **kwargs):
            address = await self.address(recipient_id)
            await self.sender.post(url, {...})

Optional hooks on the input: ``decode`` (form bodies), ``register_routes``
(extra routes such as a GET verification handshake), ``record_events``
(non-message events such as delivery statuses), ``before_processing``
(platform acknowledgements), ``on_identified`` (per-customer bookkeeping),
``message_text`` (rewrite what Rasa reads), ``output_channel_for`` (a
per-request collector for synchronous channels) and ``build_response`` (what
the platform gets back). ``alias_payload``/``resolve_payload`` keep button
payloads that are too long for a platform in Redis.
"""
import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.constants import INTENT_MESSAGE_PREFIX
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.outbound import OutboundSender, redis_key
from threadline import identity, settings

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_DEDUPE_TTL = 7 * 24 * 3600  # Meta retries failed deliveries for up to 7 days.
LINK_CODE_RE = re.compile(r"^\s*(?:link|/start)\s+(\d{6})\s*$", re.IGNORECASE)
UNSUPPORTED_REPLY = (
    "Sorry, I can only read text messages and button replies here. "
    "Could you type your question instead?"
)

# Envelope kinds. "text", "button", "location" and "contact" reach the bot;
# "media" only when it carries a caption; "ignored" is dropped quietly
# (reactions, platform notices); anything else gets UNSUPPORTED_REPLY.
KIND_TEXT = "text"
KIND_BUTTON = "button"
KIND_LOCATION = "location"
KIND_CONTACT = "contact"
KIND_MEDIA = "media"
KIND_IGNORED = "ignored"
KIND_UNSUPPORTED = "unsupported"


class BadPayload(ValueError):
    """A request body that cannot be decoded (answered with HTTP 400)."""


@dataclass
class Envelope:
    """One inbound message in the same shape for every channel.

    ``text`` is what the customer typed (or a caption); ``payload`` is the
    button payload for ``kind == "button"``. ``phone`` is E.164 and only set
    when the platform vouches for it (then ``phone_verified``) or the channel
    knows it with lower trust (a voice caller id). ``extra`` goes into the
    UserMessage metadata as is.
    """

    channel: str
    channel_user_id: str
    message_id: str
    text: Optional[str] = None
    payload: Optional[str] = None
    kind: str = KIND_TEXT
    locale: Optional[str] = None
    profile_name: Optional[str] = None
    phone: Optional[str] = None
    phone_verified: bool = False
    signed_customer_id: Optional[str] = None
    signature: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> Optional[str]:
        """What the bot should read: the button payload, else the text."""
        if self.kind == KIND_BUTTON and self.payload:
            return self.payload
        return self.text if self.text and self.text.strip() else None

    @property
    def readable(self) -> bool:
        """Whether the bot can do anything with this message."""
        if self.kind in (KIND_TEXT, KIND_BUTTON, KIND_LOCATION, KIND_CONTACT, KIND_MEDIA):
            return self.content is not None
        return False


@dataclass
class Outcome:
    """What the pipeline did with one envelope (for ``build_response`` and tests)."""

    envelope: Envelope
    status: str  # processed | duplicate | unsupported | ignored | failed
    customer_id: Optional[str] = None
    trace_id: Optional[str] = None
    message: Optional[UserMessage] = None


def constant_time_equals(given: Optional[str], expected: Optional[str]) -> bool:
    """Compare a secret from a request with the configured one in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def run_sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (Redis, identity) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


ALIAS_PREFIX = "~p:"
ALIAS_TTL = 30 * 24 * 3600


def alias_payload(channel: str, payload: str, max_bytes: int, redis: Any, ttl: int = ALIAS_TTL) -> str:
    """``payload`` if it fits in ``max_bytes``, else a short key for it stored in Redis.

    Platforms cap what a button can carry (Telegram callback_data: 64 bytes;
    WhatsApp reply ids: 256 characters). The key is derived from the payload,
    so re-sending the same button reuses it. Blocking; see ``resolve_payload``.
    """
    if len(payload.encode("utf-8")) <= max_bytes and not payload.startswith(ALIAS_PREFIX):
        return payload
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
    redis.set(redis_key("payload", channel, digest), payload, ex=ttl)
    return ALIAS_PREFIX + digest


def resolve_payload(channel: str, value: str, redis: Any) -> str:
    """The payload behind a key made by ``alias_payload`` (or ``value`` itself)."""
    if not value.startswith(ALIAS_PREFIX):
        return value
    stored = redis.get(redis_key("payload", channel, value[len(ALIAS_PREFIX):]))
    if stored is None:
        logger.warning("%s: button payload %s expired or unknown", channel, value)
        return value
    return stored.decode("utf-8") if isinstance(stored, bytes) else stored


def _redis():
    from threadline.redis_client import get_client

    return get_client()


class ThreadlineInput(InputChannel):
    """Base input channel: credentials, routes, and the per-message pipeline.

    Subclasses set ``channel`` and ``credential_env`` and implement ``verify``,
    ``parse`` and ``get_output_channel``.
    """

    channel: str = ""
    # How the assistant names this channel to the customer ("we were talking
    # on WhatsApp"); actions read it from metadata and never name channels.
    channel_label: str = ""
    # credentials.yml key -> environment variable named in errors. Every key is
    # required unless it has an entry in ``credential_defaults``.
    credential_env: Dict[str, str] = {}
    credential_defaults: Dict[str, str] = {}
    unsupported_reply: str = UNSUPPORTED_REPLY

    @classmethod
    def name(cls) -> str:
        """The channel name: routes live under ``/webhooks/<name>/``."""
        return cls.channel or super().name()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "ThreadlineInput":
        """Build the channel from credentials.yml, failing loudly on a missing secret.

        A value missing from credentials.yml is read from its environment
        variable; one missing from both raises naming the variable.
        """
        return cls(cls.load_config(credentials))

    @classmethod
    def load_config(cls, credentials: Optional[Dict[str, Any]]) -> Dict[str, str]:
        """Credentials merged with the environment and defaults; checks required keys."""
        credentials = credentials or {}
        config: Dict[str, str] = {}
        missing = []
        for key, variable in cls.credential_env.items():
            value = credentials.get(key)
            if isinstance(value, str) and (not value.strip() or value.strip().startswith("${")):
                value = None  # empty, or an unexpanded ${VAR}
            if value is None:
                value = settings.env(variable)
            if value is None:
                value = cls.credential_defaults.get(key)
            if value is None:
                missing.append(f"{variable} (credentials key '{key}')")
            else:
                config[key] = str(value)
        if missing:
            raise RasaException(
                f"The {cls.name()} channel needs these settings: {', '.join(missing)}. "
                f"Set the environment variable(s) referenced in credentials.yml."
            )
        return config

    def __init__(
        self,
        config: Dict[str, str],
        *,
        max_body_bytes: Optional[int] = None,
        dedupe_ttl: Optional[int] = None,
        redis: Any = None,
    ) -> None:
        self.config = dict(config)
        self.max_body_bytes = max_body_bytes or int(
            settings.env("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))
        )
        self.dedupe_ttl = dedupe_ttl or int(settings.env("DEDUPE_TTL_SECONDS", str(DEFAULT_DEDUPE_TTL)))
        self._redis = redis
        self.sender = self.make_sender()

    # ------------------------------------------------------------ subclass hooks

    def make_sender(self) -> OutboundSender:
        """The outbound sender shared by this channel's output channels."""
        return OutboundSender(self.name(), redis=self.redis_client)

    def verify(self, request: Request, body: bytes) -> bool:
        """Whether the request really comes from the platform. Runs before parsing."""
        raise NotImplementedError

    def decode(self, request: Request, body: bytes) -> Any:
        """Decode the raw body (JSON by default); raise ``BadPayload`` if malformed."""
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"malformed JSON: {exc}") from exc

    def parse(self, request: Request, payload: Any) -> List[Envelope]:
        """The platform payload as envelopes, in delivery order.

        May raise ``BadPayload`` for a payload of the wrong shape.
        """
        raise NotImplementedError

    def record_events(self, request: Request, payload: Any) -> None:
        """Handle what the delivery carries besides messages (delivery statuses...).

        Runs in a worker thread after verification, before the messages.
        """

    async def before_processing(self, request: Request, envelope: Envelope) -> None:
        """Runs once per new (not duplicate) envelope, before identification.

        For platform acknowledgements such as answering a Telegram callback query.
        """

    def register_routes(
        self, blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        """Add channel-specific routes (the base adds ``GET /`` and ``POST /webhook``)."""

    def on_identified(self, envelope: Envelope, customer_id: str) -> None:
        """Per-customer bookkeeping once the sender is known (runs in a worker thread)."""

    def message_text(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """The text Rasa reads (runs in a worker thread).

        Typed text starting with "/" would be read by Rasa as an intent with
        entities ("/inform{...}"), so it is neutralised; only button payloads,
        which the bot itself sent, may carry intents.
        """
        content = envelope.content
        if envelope.kind == KIND_BUTTON and content:
            return resolve_payload(self.name(), content, self.redis_client())
        if content and content.lstrip().startswith(INTENT_MESSAGE_PREFIX):
            content = content.lstrip().lstrip(INTENT_MESSAGE_PREFIX).strip() or None
        return content

    def output_channel_for(self, request: Request, envelope: Envelope) -> OutputChannel:
        """The output channel for replies to ``envelope`` (default: the platform API)."""
        output = self.get_output_channel()
        if output is None:
            raise RuntimeError(f"{type(self).__name__} has no output channel")
        return output

    def build_response(self, request: Request, outcomes: List[Outcome]) -> HTTPResponse:
        """What the platform gets back once every envelope was handled."""
        return response.json({"status": "ok"})

    # ------------------------------------------------------------------- plumbing

    def redis_client(self) -> Any:
        """The Redis client (the shared one unless one was injected)."""
        return self._redis if self._redis is not None else _redis()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """``GET /`` health, ``POST /webhook``, plus the subclass's routes."""
        module = inspect.getmodule(self)
        blueprint = Blueprint(f"threadline_{self.name()}", module.__name__ if module else None)

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok", "channel": self.name()})

        async def receive(request: Request) -> HTTPResponse:
            return await self.handle_request(request, on_new_message)

        # A streamed route lets the size limit apply before the body is read.
        blueprint.add_route(receive, "/webhook", methods=["POST"], stream=True, name="webhook")

        @blueprint.listener("after_server_stop")
        async def close_sender(*_: Any) -> None:
            await self.sender.close()

        self.register_routes(blueprint, on_new_message)
        return blueprint

    async def read_body(self, request: Request) -> Optional[bytes]:
        """The request body, or None if it is larger than ``max_body_bytes``."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        if request.stream is None:  # non-streamed route (a subclass's own)
            body = request.body or b""
            return body if len(body) <= self.max_body_bytes else None
        chunks = []
        size = 0
        while True:
            chunk = await request.stream.read()
            if chunk is None:
                break
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle_request(
        self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> HTTPResponse:
        """Run the whole pipeline for one webhook request."""
        body = await self.read_body(request)
        if body is None:
            logger.warning("%s webhook: body over %d bytes refused", self.name(), self.max_body_bytes)
            return response.json({"error": "payload too large"}, status=413)
        if not self.verify(request, body):
            logger.warning("%s webhook: verification failed; request ignored", self.name())
            return response.json({"error": "forbidden"}, status=403)
        try:
            payload = self.decode(request, body)
            envelopes = self.parse(request, payload)
        except BadPayload as exc:
            logger.warning("%s webhook: bad payload: %s", self.name(), exc)
            return response.json({"error": "bad request"}, status=400)
        try:
            await run_sync(self.record_events, request, payload)
        except Exception:
            logger.exception("%s webhook: could not record the delivery's events", self.name())
            return response.json({"error": "temporarily unavailable"}, status=500)
        outcomes = []
        for envelope in envelopes:
            try:
                outcomes.append(await self.handle_envelope(request, envelope, on_new_message))
            except Exception:
                # Identity or Redis failed before the bot saw the message: the
                # dedupe mark was released, so the platform's retry processes it.
                logger.exception("%s webhook: message %s failed", self.name(), envelope.message_id)
                return response.json({"error": "temporarily unavailable"}, status=500)
        return self.build_response(request, outcomes)

    async def handle_envelope(
        self,
        request: Request,
        envelope: Envelope,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
    ) -> Outcome:
        """Dedupe, identify and forward one envelope (or answer it politely)."""
        trace_id = uuid.uuid4().hex
        if envelope.kind == KIND_IGNORED:
            logger.info("%s: ignored %s (trace %s)", self.name(), envelope.extra.get("type"), trace_id)
            return Outcome(envelope, "ignored", trace_id=trace_id)
        if not await run_sync(self.first_delivery, envelope):
            logger.info("%s: duplicate delivery of %s ignored", self.name(), envelope.message_id)
            return Outcome(envelope, "duplicate", trace_id=trace_id)
        try:
            await self.before_processing(request, envelope)
            prepared = await run_sync(self.identify, request, envelope)
        except Exception:
            await run_sync(self.forget_delivery, envelope)
            raise
        customer_id, metadata, text = prepared
        metadata["trace_id"] = trace_id
        output = self.output_channel_for(request, envelope)
        if text is None:
            logger.info(
                "%s: %s message %s from %s cannot be read; sent the polite reply (trace %s)",
                self.name(), envelope.extra.get("type", envelope.kind), envelope.message_id, customer_id, trace_id,
            )
            await output.send_text_message(customer_id, self.unsupported_reply)
            return Outcome(envelope, "unsupported", customer_id, trace_id)
        message = UserMessage(
            text,
            output,
            customer_id,
            input_channel=self.name(),
            message_id=envelope.message_id,
            metadata=metadata,
        )
        try:
            await on_new_message(message)
        except Exception:
            # The bot may already have acted (and replied); a redelivery must
            # not run it twice, so the dedupe mark stays.
            logger.exception("%s: the bot failed on message %s (trace %s)", self.name(), envelope.message_id, trace_id)
            return Outcome(envelope, "failed", customer_id, trace_id, message)
        return Outcome(envelope, "processed", customer_id, trace_id, message)

    def _dedupe_key(self, envelope: Envelope) -> str:
        return redis_key("dedupe", self.name(), envelope.message_id)

    def first_delivery(self, envelope: Envelope) -> bool:
        """Mark the platform message id as seen; False if it already was."""
        return bool(self.redis_client().set(self._dedupe_key(envelope), "1", nx=True, ex=self.dedupe_ttl))

    def forget_delivery(self, envelope: Envelope) -> None:
        """Undo ``first_delivery`` so a redelivery is processed."""
        self.redis_client().delete(self._dedupe_key(envelope))

    def identify(self, request: Request, envelope: Envelope):
        """Resolve the customer, redeem link codes, record the channel (blocking).

        Returns ``(customer_id, metadata, text)``; ``text`` is None when the
        message cannot be read by the bot.
        """
        redis = self.redis_client()
        who = identity.resolve(
            envelope.channel,
            envelope.channel_user_id,
            phone=envelope.phone,
            verified_phone=envelope.phone_verified,
            signed_customer_id=envelope.signed_customer_id,
            signature=envelope.signature,
            redis=redis,
        )
        customer_id, trust = who.customer_id, who.trust
        metadata: Dict[str, Any] = {}
        text = self.message_text(envelope, customer_id) if envelope.readable else None
        match = LINK_CODE_RE.match(envelope.text or "") if envelope.kind == KIND_TEXT else None
        if match:
            code = match.group(1)
            result = identity.redeem_link_code(
                code, envelope.channel, envelope.channel_user_id,
                redis=redis, tracker_store=self._tracker_store(request),
            )
            metadata["link_result"] = {"ok": result.ok, "reason": result.reason, "merged_from": result.merged_from}
            if result.ok and result.customer_id:
                customer_id = result.customer_id
                linked = identity.channel_identity(envelope.channel, envelope.channel_user_id, redis)
                trust = linked.trust if linked else trust
            text = f"LINK {code}"
        previous = identity.record_channel_use(customer_id, envelope.channel, redis=redis)
        self.on_identified(envelope, customer_id)
        metadata.update(
            {
                "channel": envelope.channel,
                "channel_user_id": envelope.channel_user_id,
                "message_id": envelope.message_id,
                "trust": trust,
                "is_new_customer": who.is_new,
                "kind": envelope.kind,
                "locale": envelope.locale,
                "profile_name": envelope.profile_name,
                "channel_label": self.channel_label or envelope.channel.replace("_", " ").title(),
                "previous_channel": previous,
            }
        )
        for key, value in envelope.extra.items():
            metadata.setdefault(key, value)
        return customer_id, metadata, text

    @staticmethod
    def _tracker_store(request: Request) -> Any:
        """The agent's tracker store, if it can merge conversations (for link codes)."""
        agent = getattr(getattr(request.app, "ctx", None), "agent", None)
        store = getattr(agent, "tracker_store", None)
        store = getattr(store, "_tracker_store", store)  # rasa wraps it in FailSafeTrackerStore
        return store if hasattr(store, "merge_conversations_sync") else None


class ThreadlineOutput(OutputChannel):
    """Base output channel: addressing, channel checks, internal notes.

    The recipient Rasa passes is the conversation id, i.e. the customer id; it
    is mapped to the customer's address on this channel through the identity
    index (for replies and for proactive messages alike), falling back to the
    recipient id itself.
    """

    channel: str = ""

    def __init__(self, config: Dict[str, str], sender: OutboundSender, redis: Any = None) -> None:
        self.config = config
        self.sender = sender
        self._redis = redis

    @classmethod
    def name(cls) -> str:
        """Same name as the input channel, as Rasa's trigger_intent API expects."""
        return cls.channel or super().name()

    def redis_client(self) -> Any:
        """The Redis client (the shared one unless one was injected)."""
        return self._redis if self._redis is not None else _redis()

    async def address(self, recipient_id: str) -> str:
        """The platform address of the customer ``recipient_id`` on this channel."""
        found = await run_sync(identity.address_for, recipient_id, self.name(), self.redis_client())
        return found or recipient_id

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Send one bot response, unless it is an internal note or meant for another channel.

        A ``custom`` payload with ``"internal_note"`` (or ``"type": "internal_note"``)
        is for the agent desk only; one with ``"channel": "<name>"`` is only sent
        on that channel.
        """
        custom = message.get("custom")
        if isinstance(custom, dict):
            if custom.get("internal_note") or custom.get("type") == "internal_note":
                logger.debug("%s: internal note not sent to the customer", self.name())
                return
            target = custom.get("channel")
            if target and target != self.name():
                return
        await super().send_response(recipient_id, message)


def iter_dicts(value: Any) -> Iterable[Dict[str, Any]]:
    """The dict items of ``value`` if it is a list, else nothing (defensive parsing)."""
    if isinstance(value, list):
        return (item for item in value if isinstance(item, dict))
    return ()
