"""The shared base of every Threadline connector.

A connector is one ``ThreadlineInput`` subclass (receiving) and one
``ThreadlineOutput`` subclass (sending). The base owns the pipeline that every
channel runs the same way; a subclass only says how its platform verifies,
encodes and addresses messages.

Receiving, per webhook request (``POST /webhooks/<name>/webhook``)::

    rate limit per source (429) -> body limit (413) -> verify (403) -> decode (400)
    -> parse: a Delivery of Envelopes -> record_events -> for each Envelope, in order:
       claim the platform message id (a redelivery of a stored turn is answered 200,
       one still being processed 503) -> rate limit per sender (429)
       -> identity.resolve (+ owner, link codes, consent keywords) -> record_channel_use
       -> personal data masked (connectors.personal_data)
       -> UserMessage(sender_id=<customer id>, metadata=<signed TurnMetadata + extras>)
       -> on_new_message -> the id is marked done (the tracker store marks it,
          atomically with the save), so a crash before that means a redelivery
          is processed, exactly once; a push channel's replies go out after the
          save (connectors.reply_outbox), then the id is marked sent
    -> build_response

Socket.io, voice and journeys enter the same pipeline with ``process`` and an
``Inbound`` of their own; no hook ever sees a web framework request.

Writing a connector::

    class AcmeInput(ThreadlineInput):
        channel = "acme"
        credential_env = {"secret": "ACME_SECRET", "api_base": "ACME_API_BASE"}
        credential_defaults = {"api_base": "https://api.acme.example"}

        def verify(self, inbound, body) -> bool:      # before anything is parsed
            return constant_time_equals(inbound.headers.get("x-acme-token"), self.config["secret"])

        def parse(self, inbound, payload) -> Delivery: # platform payload -> envelopes
            return Delivery(inbound, [Envelope(channel="acme", channel_user_id=..., message_id=..., text=...)])

        def get_output_channel(self):
            return AcmeOutput(self.config, sender=self.sender)

    class AcmeOutput(ThreadlineOutput):
        channel = "acme"
        async def send_text_message(self, recipient_id, text, **kwargs):
            address = await self.address(recipient_id)
            await self.sender.post(url, {...})

Optional hooks: ``decode`` (form bodies), ``register_routes`` (extra routes),
``record_events`` (delivery statuses), ``before_processing`` (platform
acknowledgements), ``on_identified`` (per-customer bookkeeping),
``message_text`` (rewrite what Rasa reads), ``output_channel_for`` (a
collector for synchronous channels) and ``build_response``.
"""
from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.constants import INTENT_MESSAGE_PREFIX
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import consent, dedupe, linking, personal_data, reply_outbox, server, turn_metrics, turn_trace
from connectors.delivery import (  # noqa: F401 (re-exported: the connector interface)
    KIND_BUTTON,
    KIND_CONTACT,
    KIND_IGNORED,
    KIND_LOCATION,
    KIND_MEDIA,
    KIND_TEXT,
    KIND_UNSUPPORTED,
    BadPayload,
    Delivery,
    Envelope,
    Inbound,
    Outcome,
)
from connectors.credentials import AllMissing, DisabledChannel, load_config
from connectors.outbound import OutboundSender
from connectors.output import NoAddress, ThreadlineOutput  # noqa: F401 (re-exported: the connector interface)
from connectors.identify import Turn, turn_metadata, who_wrote
from connectors.payloads import alias_payload, resolve_payload  # noqa: F401
from threadline import identity, tracing
from threadline import settings as settings_module
from threadline.keys import Keys
from threadline.limits import Budget

logger = logging.getLogger(__name__)

IN_PROGRESS_RETRY = 5
UNSUPPORTED_REPLY = (
    "Sorry, I can only read text messages and button replies here. "
    "Could you type your question instead?"
)

def constant_time_equals(given: Optional[str], expected: Optional[str]) -> bool:
    """Compare a secret from a request with the configured one in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


async def run_sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (Redis, identity, the database) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def _redis():
    from threadline.redis_client import get_client

    return get_client()


def iter_dicts(value: Any):
    """The dict items of ``value`` if it is a list, else nothing (defensive parsing)."""
    if isinstance(value, list):
        return (item for item in value if isinstance(item, dict))
    return ()


def error_response(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> HTTPResponse:
    """A JSON error that says what is wrong."""
    return response.json({"error": message}, status=status, headers=headers)


class ThreadlineInput(InputChannel):
    """Base input channel: credentials, routes, and the per-message pipeline.

    Subclasses set ``channel`` and ``credential_env`` and implement ``verify``,
    ``parse`` and ``get_output_channel``.
    """

    channel: str = ""
    # How the assistant names this channel to the customer ("we were talking
    # on WhatsApp"); actions read it from metadata and never name channels.
    channel_label: str = ""
    # credentials.yml key -> environment variable. Every key is required
    # unless it has an entry in ``credential_defaults``.
    credential_env: Dict[str, str] = {}
    credential_defaults: Dict[str, str] = {}
    unsupported_reply: str = UNSUPPORTED_REPLY
    # Replies are calls to the platform's API: they go out once the turn is
    # stored, and a redelivery of a stored turn resends what it holds
    # (``connectors.reply_outbox``). Channels that answer in the webhook's
    # response, or acknowledge on their own socket, leave it off.
    holds_replies: bool = False

    @classmethod
    def name(cls) -> str:
        """The channel name: routes live under ``/webhooks/<name>/``."""
        return cls.channel or super().name()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> InputChannel:
        """Build the channel from credentials.yml and the environment.

        With none of its required settings given the channel is off (a
        ``DisabledChannel`` saying what to set); with some but not all, start-up
        fails naming the missing variables.
        """
        try:
            return cls(cls.load_config(credentials))
        except AllMissing as off:
            logger.info("%s channel off: set %s", cls.name(), ", ".join(off.missing))
            return DisabledChannel(cls.name(), off.missing)

    @classmethod
    def load_config(cls, credentials: Optional[Dict[str, Any]]) -> Dict[str, str]:
        """Credentials merged with the environment and defaults (see ``connectors.credentials``)."""
        return load_config(cls, credentials)

    def __init__(
        self,
        config: Dict[str, str],
        *,
        max_body_bytes: Optional[int] = None,
        dedupe_ttl: Optional[int] = None,
        redis: Any = None,
    ) -> None:
        self.config = dict(config)
        self.settings = settings_module.get()
        self.max_body_bytes = max_body_bytes or self.settings.integer("MAX_BODY_BYTES")
        self.dedupe_ttl = dedupe_ttl or self.settings.integer("DEDUPE_TTL_SECONDS")
        self.source_budget = Budget(f"src-{self.name()}", self.settings.integer("RATE_LIMIT_PER_SOURCE"), 60)
        self.sender_budget = Budget(f"snd-{self.name()}", self.settings.integer("RATE_LIMIT_PER_SENDER"), 60)
        self._redis = redis
        self.keys = Keys()
        self.sender = self.make_sender()

    # ------------------------------------------------------------ subclass hooks

    def make_sender(self) -> OutboundSender:
        """The outbound sender shared by this channel's output channels."""
        return OutboundSender(self.name())

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """Whether the request really comes from the platform. Runs before parsing."""
        raise NotImplementedError

    def decode(self, inbound: Inbound, body: bytes) -> Any:
        """Decode the raw body (JSON by default); raise ``BadPayload`` if malformed."""
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"the body is not valid JSON ({exc})") from exc

    def parse(self, inbound: Inbound, payload: Any) -> Delivery:
        """The platform payload as a delivery of envelopes, in order.

        May raise ``BadPayload`` for a payload of the wrong shape. A plain list
        of envelopes is accepted too.
        """
        raise NotImplementedError

    def record_events(self, delivery: Delivery) -> None:
        """Handle what the delivery carries besides messages (delivery statuses...).

        Runs in a worker thread after verification, before the messages.
        """

    async def before_processing(self, delivery: Delivery, envelope: Envelope) -> None:
        """Runs once per new (not duplicate) envelope, before identification."""

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

    def output_channel_for(self, delivery: Delivery, envelope: Envelope) -> OutputChannel:
        """The output channel for replies to ``envelope`` (default: the platform API)."""
        output = self.get_output_channel()
        if output is None:
            raise RuntimeError(f"{type(self).__name__} has no output channel")
        return output

    @staticmethod
    def must_resend(delivery: Delivery) -> Optional[Tuple[str, int]]:
        """Why the sender must send the delivery again, and after how many seconds; None once it is stored.

        ``limited`` (the sender's rate limit) or ``retry`` (a message being
        processed, or one whose turn failed): the webhook's non-200, the
        socket's error acknowledgement.
        """
        statuses = {outcome.status for outcome in delivery.outcomes}
        if "limited" in statuses:
            return "limited", max(o.retry_after for o in delivery.outcomes if o.status == "limited")
        if "failed" in statuses or "in_progress" in statuses:
            return "retry", IN_PROGRESS_RETRY
        return None

    def build_response(self, delivery: Delivery) -> HTTPResponse:
        """What the platform gets back once every envelope was handled."""
        resend = self.must_resend(delivery)
        if resend is None:
            return response.json({"status": "ok"})
        reason, wait = resend
        if reason == "limited":
            return error_response(429, "too many messages from this sender; retry later",
                                  server.retry_after_headers(wait))
        return error_response(503, "the message is being processed or could not be processed yet; retry later",
                              server.retry_after_headers(wait))

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

        server.register(blueprint)
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

    def inbound_from(self, request: Request, body: bytes, route: str = "webhook") -> Inbound:
        """The transport-neutral view of an HTTP request."""
        return Inbound(
            app=request.app, body=body, headers=request.headers, args=request.args, url=request.url,
            path=request.path, query_string=request.query_string, scheme=server.request_scheme(request),
            host=request.host, source=server.client_address(request), route=route, transport="http",
        )

    async def check_source(self, source: str) -> Optional[HTTPResponse]:
        """429 when one client address sends more than ``RATE_LIMIT_PER_SOURCE`` a minute."""
        verdict = await run_sync(self.source_budget.hit, self.redis_client(), self.keys, source)
        if verdict.allowed:
            return None
        logger.warning("%s: rate limit for a source reached (%d requests this minute)", self.name(), verdict.count)
        return error_response(429, "too many requests from this address; retry later",
                              server.retry_after_headers(verdict.retry_after))

    async def handle_request(
        self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]], route: str = "webhook"
    ) -> HTTPResponse:
        """Limits, then the whole pipeline for one webhook request."""
        limited = await self.check_source(server.client_address(request))
        if limited is not None:
            return limited
        body = await self.read_body(request)
        if body is None:
            logger.warning("%s webhook: body over %d bytes refused", self.name(), self.max_body_bytes)
            return error_response(413, f"the body is larger than {self.max_body_bytes} bytes")
        return await self.receive(self.inbound_from(request, body, route), on_new_message)

    @turn_trace.traced_request
    async def receive(self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> HTTPResponse:
        """Verify, decode, parse and process one inbound; answer the platform."""
        try:
            with turn_trace.step("verify"):
                verified = self.verify(inbound, inbound.body)
        except Exception:  # a malformed header must never become a 500
            logger.exception("%s webhook: verification raised; refused", self.name())
            verified = False
        if not verified:
            logger.warning("%s webhook: verification failed; request ignored", self.name())
            return error_response(403, "the request's signature or token is missing or wrong")
        try:
            with turn_trace.step("parse"):
                payload = self.decode(inbound, inbound.body)
                delivery = self.as_delivery(inbound, self.parse(inbound, payload), payload)
        except BadPayload as exc:
            logger.warning("%s webhook: bad payload: %s", self.name(), exc)
            return error_response(400, str(exc))
        try:
            await self.process(delivery, on_new_message)
        except _Unavailable:
            return error_response(503, "temporarily unavailable; retry later", server.retry_after_headers(5))
        result = self.build_response(delivery)
        return await result if inspect.isawaitable(result) else result

    @staticmethod
    def as_delivery(inbound: Inbound, parsed: Any, payload: Any = None) -> Delivery:
        """``parse``'s result as a ``Delivery`` (a list of envelopes is wrapped)."""
        delivery = parsed if isinstance(parsed, Delivery) else Delivery(inbound, list(parsed or []))
        if delivery.payload is None:
            delivery.payload = payload
        return delivery

    async def process(self, delivery: Delivery, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Delivery:
        """Record the delivery's events, then handle each envelope in order.

        Raises ``_Unavailable`` when Redis or identity failed before the bot saw
        a message (its lease is released, so the platform's retry processes it).
        """
        try:
            if type(self).record_events is not ThreadlineInput.record_events:  # no thread hop for nothing
                await run_sync(self.record_events, delivery)
        except Exception:
            logger.exception("%s webhook: could not record the delivery's events", self.name())
            raise _Unavailable() from None
        for envelope in delivery.envelopes:
            try:
                outcome = await self.handle_envelope(delivery, envelope, on_new_message)
            except Exception:
                logger.exception("%s webhook: message %s failed", self.name(), envelope.message_id)
                raise _Unavailable() from None
            delivery.outcomes.append(outcome)
            if outcome.status == "limited":
                break  # the platform retries the rest; what was done is deduplicated
        return delivery

    # ------------------------------------------------------------- one envelope

    @turn_metrics.measured_turn
    @turn_trace.traced_turn
    async def handle_envelope(
        self,
        delivery: Delivery,
        envelope: Envelope,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
    ) -> Outcome:
        """Claim, identify and forward one envelope (or answer it politely)."""
        trace_id = tracing.current_trace_id() or uuid.uuid4().hex  # with traces on, the turn's trace
        if envelope.kind == KIND_IGNORED:
            logger.info("%s: ignored %s (trace %s)", self.name(), envelope.extra.get("type"), trace_id)
            return Outcome(envelope, "ignored", trace_id=trace_id)
        lease = uuid.uuid4().hex
        claim = await run_sync(self.claim_delivery, envelope, lease)
        if claim.outcome == "limited":
            return Outcome(envelope, "limited", trace_id=trace_id, retry_after=claim.retry_after)
        if claim.outcome == "unsent":
            return await self.resend_replies(delivery, envelope, claim.conversation_id or "", lease, trace_id)
        if claim.outcome != "claimed":
            logger.info("%s: %s delivery of %s", self.name(), claim.outcome.replace("_", " "), envelope.message_id)
            return Outcome(envelope, claim.outcome, trace_id=trace_id)
        try:
            await self.before_processing(delivery, envelope)
            with tracing.span("threadline.identify", {tracing.CHANNEL: self.name()}):
                turn = await run_sync(self.identify, delivery, envelope)
            with consent.replying(turn.customer_id, self.name()):
                handled = await linking.intercept(self, delivery, envelope, turn)
            if handled is None:
                handled = await consent.intercept(self, delivery, envelope, turn)
            if handled is not None:
                await run_sync(self.mark_done, envelope)
                return Outcome(envelope, "processed", handled, trace_id)
            turn.previous_channel = await run_sync(self.finish_turn_setup, envelope, turn)
        except Exception:
            await run_sync(self.release_delivery, envelope, lease)
            raise
        metadata = self.metadata_for(envelope, turn, trace_id, delivery.inbound.app)
        output = self.output_channel_for(delivery, envelope)
        if turn.text is None:
            logger.info(
                "%s: %s message %s from %s cannot be read; sent the polite reply (trace %s)",
                self.name(), envelope.extra.get("type", envelope.kind), envelope.message_id, turn.customer_id, trace_id,
            )
            await output.send_text_message(turn.customer_id, self.unsupported_reply)
            await run_sync(self.mark_done, envelope)
            return Outcome(envelope, "unsupported", turn.customer_id, trace_id)
        message = UserMessage(
            turn.text, reply_outbox.HeldReplies(output) if self.holds_replies else output, turn.customer_id,
            input_channel=self.name(), message_id=envelope.message_id, metadata=metadata,
        )
        try:
            with consent.replying(turn.customer_id, self.name()), tracing.span("threadline.rasa"):
                await on_new_message(message)
                # Rasa flushes them inside the conversation's lock (threadline.rasa_patches);
                # this sends what a callback that is not Rasa's processor left held.
                await reply_outbox.flush(message.output_channel)
        except Exception:
            # Not stored: release the claim so the platform's retry processes it.
            logger.exception("%s: the bot failed on message %s (trace %s)", self.name(), envelope.message_id, trace_id)
            await run_sync(self.release_delivery, envelope, lease)
            return Outcome(envelope, "failed", turn.customer_id, trace_id, message)
        await run_sync(self.mark_done, envelope)
        return Outcome(envelope, "processed", turn.customer_id, trace_id, message)

    # -------------------------------------------------------------- delivery ids

    def claim_delivery(self, envelope: Envelope, lease: str) -> dedupe.Claim:
        """The sender's rate limit, then the claim, in one round trip.

        ``claimed``; ``duplicate`` (already stored) or ``in_progress`` (being
        processed), not counted against the sender; ``limited`` (over
        ``RATE_LIMIT_PER_SENDER`` this minute, not claimed, with its retry
        after); or, when the channel ``holds_replies``, ``unsent`` (stored,
        its replies to be resent under ``lease``).
        """
        budget = self.sender_budget
        claim = dedupe.claim_within(
            self.redis_client(), self.keys.dedupe(self.name(), envelope.message_id), lease,
            budget.key(self.keys, f"{envelope.channel}:{envelope.channel_user_id}"), budget.window, budget.limit,
            self.keys.dedupe_resend(self.name(), envelope.message_id), self.holds_replies,
        )
        if claim.outcome == "limited":
            logger.warning("%s: rate limit for a sender reached (%d messages this minute)", self.name(), claim.count)
        return claim

    async def resend_replies(
        self, delivery: Delivery, envelope: Envelope, conversation_id: str, lease: str, trace_id: str
    ) -> Outcome:
        """Send the replies a stored turn holds: the replica that stored it may have died before sending.

        The replies are read back from the tracker store (the bot messages
        after the customer's message, up to the turn's end); then the
        delivery is ``sent``. A failure gives the resend lease up and fails
        the delivery, so the platform's retry resends.
        """
        resend_key = self.keys.dedupe_resend(self.name(), envelope.message_id)
        store = self.tracker_store(delivery.inbound.app)
        try:
            events = await run_sync(store.recent_events_sync, conversation_id) if store is not None else []
            replies = reply_outbox.replies_of_turn(events, envelope.message_id) or []
            output = self.output_channel_for(delivery, envelope)
            with consent.replying(conversation_id, self.name()):
                for reply in replies:
                    await output.send_response(conversation_id, reply)
        except Exception:
            await run_sync(dedupe.release, self.redis_client(), resend_key, lease)
            raise
        await run_sync(dedupe.resent, self.redis_client(), self.keys.dedupe(self.name(), envelope.message_id),
                       resend_key, self.dedupe_ttl)
        logger.warning("%s: message %s was stored but maybe not answered; resent its %d replies (trace %s)",
                       self.name(), envelope.message_id, len(replies), trace_id)
        return Outcome(envelope, "resent", conversation_id, trace_id)

    def release_delivery(self, envelope: Envelope, lease: str) -> None:
        """Give the claim up (only if it is still ours), so a redelivery is processed."""
        dedupe.release(self.redis_client(), self.keys.dedupe(self.name(), envelope.message_id), lease)

    def mark_done(self, envelope: Envelope) -> None:
        """The envelope's turn is stored: a redelivery is a duplicate from now on."""
        dedupe.done(self.redis_client(), self.keys.dedupe(self.name(), envelope.message_id), self.dedupe_ttl)

    # ------------------------------------------------------------------ identity

    def identify(self, delivery: Delivery, envelope: Envelope) -> Turn:
        """Resolve the customer and the business customer they are proven to be (blocking)."""
        return who_wrote(self, delivery, envelope)

    def finish_identification(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """Record the channel's use and the channel's own bookkeeping, end journey waits; the previous channel.

        The channel use and the journey-wait check are one round trip.
        """
        pipe = self.redis_client().pipeline(transaction=True)
        identity.queue_channel_use(pipe, customer_id, envelope.channel)
        pipe.exists(self.keys.journeys_waiting(customer_id))
        previous, _, waiting = pipe.execute()
        self.on_identified(envelope, customer_id)
        if waiting:
            _end_journey_waits(customer_id, self.redis_client())
        return identity.text(previous)

    def finish_turn_setup(self, envelope: Envelope, turn: Turn) -> Optional[str]:
        """:meth:`finish_identification`, then mask the turn's personal data: one thread hop (blocking)."""
        previous = self.finish_identification(envelope, turn.customer_id)
        personal_data.mask_envelope(envelope, turn, self.redis_client())
        return previous

    def metadata_for(self, envelope: Envelope, turn: Turn, trace_id: str, app: Any = None) -> Dict[str, Any]:
        """The message's metadata: the signed reserved part, then the channel's extras."""
        return turn_metadata(self, envelope, turn, trace_id, app)

    @staticmethod
    def tracker_store(app: Any) -> Any:
        """The agent's tracker store, if it can merge conversations (for link codes)."""
        agent = getattr(getattr(app, "ctx", None), "agent", None)
        store = getattr(agent, "tracker_store", None)
        store = getattr(store, "_tracker_store", store)  # rasa wraps it in FailSafeTrackerStore
        return store if hasattr(store, "merge_conversations_sync") else None


def _end_journey_waits(customer_id: str, redis: Any) -> None:
    """Any message from the customer, on any channel, ends the waits of their journeys (blocking).

    One ``EXISTS`` for a customer with no journey waiting; a failure here is
    logged and never fails the customer's turn.
    """
    try:
        from threadline.journeys import service as journeys

        journeys.customer_wrote(customer_id, redis, waiting=True)
    except Exception:
        logger.exception("could not end the journey waits of %s", customer_id)


class _Unavailable(Exception):
    """Redis or identity failed before the bot saw a message."""


