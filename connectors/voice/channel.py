"""``VoiceInput``: the call flow of every voice channel on top of the shared pipeline.

See ``connectors.voice`` for the routes, the flow and the metadata.
"""
import functools
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional
from xml.sax.saxutils import escape

from rasa.core.channels.channel import UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.base import (
    KIND_BUTTON,
    KIND_TEXT,
    Delivery,
    Envelope,
    Inbound,
    Outcome,
    ThreadlineInput,
    ThreadlineOutput,
    run_sync,
)
from connectors.identify import Turn, source_of
from connectors.outbound import OutboundSender
from connectors.voice.calls import (
    BARGE_IN,
    CALL_COMPLETED,
    CALL_FAILED,
    CALL_TTL,
    CALLER_HANGUP,
    EVENT_CALL,
    EVENT_INPUT,
    EVENT_STATUS,
    LOW_CONFIDENCE,
    NO_INPUT,
    TRANSFERRED,
    CallState,
    VoiceRequest,
    caller_identity,
    chosen_payload,
    record_event,
    started_during_prompt,
    store_choices,
)
from connectors.voice import live
from connectors.voice import outbound
from connectors.voice.outbound import EVENT_ANSWER, OutboundCall, PlacedCall
from connectors.voice.elsewhere import SendsElsewhere
from connectors.voice.speech import HUMAN_KEY, Choice, Prompt, build_prompt, spoken_preview
from threadline import identity, prefetch
from threadline.message import HandoffSignal, Trust
from threadline.settings import VARIABLES

logger = logging.getLogger(__name__)

GREET_PAYLOAD = "/greet"
MAX_NO_INPUT = 2  # the first silence is reprompted, the second ends the call
DEFAULT_LOW_CONFIDENCE = 0.5

NOT_CAUGHT = "Sorry, I didn't catch that."
GOODBYE = "I haven't heard anything, so I'll end the call here. Thanks for calling Threadline, goodbye."
TROUBLE = "Sorry, something went wrong on my side. Could you say that again?"
UNAVAILABLE = "Sorry, we're having technical trouble right now. Please call back in a few minutes. Goodbye."
HUMAN_HINT = "To talk to a person, press 0 at any time."



class VoiceOutput(ThreadlineOutput):
    """Collects the bot's responses to one webhook; the input renders them afterwards.

    Also what ``get_output_channel`` returns: a phone call cannot receive a
    proactive message outside a webhook, so those are collected and dropped.
    """

    pushes = False

    def __init__(self, config: Dict[str, str], sender: Any, redis: Any = None) -> None:
        super().__init__(config, sender, redis)
        self.messages: List[Dict[str, Any]] = []

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Collect one response, remembering the template it came from (``utter_action``)."""
        before = len(self.messages)
        await super().send_response(recipient_id, message)
        if message.get("utter_action"):
            for collected in self.messages[before:]:
                collected["utter_action"] = message["utter_action"]

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Collect text."""
        self.messages.append({"text": text})

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any) -> None:
        """Collect text with buttons (spoken as choices)."""
        self.messages.append({"text": text, "buttons": buttons})

    async def send_quick_replies(self, recipient_id: str, text: str, quick_replies: List[Dict[str, Any]], **kwargs: Any) -> None:
        """Quick replies are spoken like buttons."""
        self.messages.append({"text": text, "buttons": quick_replies})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """Collect an image (sent to a messaging channel, or left out)."""
        self.messages.append({"image": image})

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        """Collect an attachment link."""
        self.messages.append({"attachment": attachment})

    async def send_elements(self, recipient_id: str, elements: Iterable[Any], **kwargs: Any) -> None:
        """Collect carousel elements (titles spoken, buttons become choices)."""
        self.messages.append({"elements": list(elements)})

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """A custom payload is spoken if it carries ``text``; a handoff one may transfer the call."""
        if isinstance(json_message, dict) and (
            isinstance(json_message.get("text"), str) or HandoffSignal.from_custom(json_message) is not None
        ):
            self.messages.append({"custom": json_message})


class VoiceDelivery(Delivery):
    """One voice webhook: the platform's request in neutral terms and the call's state."""

    def __init__(self, inbound: Inbound, envelopes: List[Envelope], voice: VoiceRequest) -> None:
        super().__init__(inbound, envelopes)
        self.voice = voice
        self.state: Optional[CallState] = None
        self.output: Optional[VoiceOutput] = None
        self.answer: Optional[OutboundCall] = None  # an outbound call's answer: the claimed token's call
        self.replayed = False  # the platform retried an answer already given


class VoiceInput(SendsElsewhere, ThreadlineInput):
    """Base of the voice channels: the call flow on top of the shared pipeline.

    Subclasses set ``channel``/``credential_env`` and implement ``verify``,
    ``decode``, ``voice_request`` (platform fields -> ``VoiceRequest``),
    ``render`` (``Prompt`` -> response body) and ``status_body``.
    """

    output_class = VoiceOutput
    content_type = "text/plain"
    terminal_statuses = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
    channel_label = "the phone"
    end_of_speech_wait = 1.0

    def __init__(self, config: Dict[str, str], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.prefetcher = prefetch.Prefetcher()
        self._deliveries: set = set()
        self.low_confidence = self.settings.number("VOICE_LOW_CONFIDENCE")
        # Placing a call is not idempotent: only a 429 or a connection never made is retried.
        self.call_sender = OutboundSender(f"{self.name()}-calls", secrets=self.outbound_secrets(),
                                          retry_statuses=frozenset({429}), retry_network_errors=False)

    # ------------------------------------------------------------ subclass hooks

    def voice_request(self, inbound: Inbound, payload: Any) -> VoiceRequest:
        """The platform's fields as a ``VoiceRequest``; raise ``BadPayload`` if unusable."""
        raise NotImplementedError

    def render(self, inbound: Inbound, prompt: Prompt, action_url: str) -> str:
        """The response body that speaks ``prompt`` and listens at ``action_url``."""
        raise NotImplementedError

    def status_body(self) -> str:
        """The body answering a status callback."""
        return ""

    def outbound_secrets(self) -> List[str]:
        """Secrets masked in outbound call errors and logs."""
        return []

    def outbound_settings(self) -> Dict[str, Optional[str]]:
        """The settings outbound calls need (variable -> value); an unset one is reported by name."""
        return {}

    async def request_call(self, number: str, answer_url: str, status_url: str, context: Dict[str, str]) -> PlacedCall:
        """Ask the provider to phone ``number`` and fetch ``answer_url`` once answered."""
        raise NotImplementedError

    # ------------------------------------------------------------------- routes

    def register_routes(
        self, blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        """``POST /gather`` (the caller's input), ``POST /status`` (call status), ``POST /outbound`` (answer)."""
        for route, event in (("gather", EVENT_INPUT), ("status", EVENT_STATUS), ("outbound", EVENT_ANSWER)):

            async def receive(request: Request, _event: str = event) -> HTTPResponse:
                return await self.handle_request(request, on_new_message, route=_event)

            blueprint.add_route(receive, f"/{route}", methods=["POST"], stream=True, name=route)

        @blueprint.listener("after_server_stop")
        async def close_call_sender(*_: Any) -> None:
            await self.call_sender.close()

    def public_base(self, inbound: Inbound) -> str:
        """Where the platform reaches us: ``public_base_url`` if set, else this request's host."""
        configured = (self.config.get("public_base_url") or "").rstrip("/")
        return configured or f"{inbound.scheme}://{inbound.host}"

    def action_url(self, inbound: Inbound, turn: int) -> str:
        """The absolute URL of the next turn's input webhook."""
        return f"{self.public_base(inbound)}/webhooks/{self.name()}/gather?turn={turn}"

    # ------------------------------------------------------------------ pipeline

    def parse(self, inbound: Inbound, payload: Any) -> VoiceDelivery:
        """One envelope per call start or caller input; none for silence, status and outbound answers."""
        voice = self.voice_request(inbound, payload)
        if inbound.route == EVENT_ANSWER:
            voice.event = EVENT_ANSWER  # the prompt is in the conversation already: nothing goes to Rasa
            return VoiceDelivery(inbound, [], voice)
        if voice.event == EVENT_STATUS or (voice.event == EVENT_INPUT and not voice.has_input):
            return VoiceDelivery(inbound, [], voice)
        user_id, phone = caller_identity(voice.caller, voice.call_id)
        extra: Dict[str, Any] = {"call_sid": voice.call_id, "channel_label": self.channel_label}
        if voice.event == EVENT_CALL:
            envelope = Envelope(
                channel=self.name(), channel_user_id=user_id, message_id=f"{voice.call_id}:call",
                kind=KIND_BUTTON, payload=GREET_PAYLOAD, phone=phone, extra={**extra, "voice_event": "call_start"},
            )
        else:
            turn = f"t{voice.turn}" if voice.turn is not None else uuid.uuid4().hex
            if (voice.speech or "").strip():
                extra.update(input_mode="speech", speech_confidence=voice.confidence)
                text = voice.speech.strip()
            else:
                extra.update(input_mode="dtmf", digits=voice.digits.strip())
                text = voice.digits.strip().rstrip("#") or voice.digits.strip()
            envelope = Envelope(
                channel=self.name(), channel_user_id=user_id, message_id=f"{voice.call_id}:{turn}",
                kind=KIND_TEXT, text=text, phone=phone, extra=extra,
            )
        return VoiceDelivery(inbound, [envelope], voice)

    def record_events(self, delivery: VoiceDelivery) -> None:
        """Load the call's state; record status, silence, confidence and barge-in (blocking)."""
        voice = delivery.voice
        redis = self.redis_client()
        state = CallState.load(redis, self.name(), voice.call_id)
        delivery.state = state
        emit = functools.partial(
            record_event, redis, channel=self.name(), call_id=voice.call_id, customer_id=state.customer_id
        )
        if voice.event == EVENT_STATUS:
            self._record_status(redis, state, voice, emit)
            return
        if voice.event == EVENT_ANSWER:
            self._claim_answer(redis, delivery, state)
            return
        current = voice.turn is None or voice.turn == state.turn
        if voice.event != EVENT_INPUT or not current:
            return  # a call start, or a late retry of an earlier turn
        if not voice.has_input:
            state.no_input += 1
            emit(NO_INPUT, count=state.no_input, turn=voice.turn, reason=voice.reason)
            return
        state.no_input = 0
        envelope = delivery.envelopes[0]
        if voice.speech and voice.confidence is not None and voice.confidence < self.low_confidence:
            envelope.extra["low_confidence"] = True
            emit(LOW_CONFIDENCE, confidence=voice.confidence, turn=voice.turn)
        if state.known and started_during_prompt(
            state.prompt_at, state.prompt_seconds, voice.received_at,
            speech=voice.speech, digits=None if voice.speech else voice.digits,
            end_of_speech_wait=self.end_of_speech_wait,
        ):
            envelope.extra["barge_in"] = True
            emit(
                BARGE_IN, turn=voice.turn, input=envelope.extra.get("input_mode"),
                elapsed=round(voice.received_at - state.prompt_at, 2), prompt_seconds=round(state.prompt_seconds, 2),
            )

    def _claim_answer(self, redis: Any, delivery: VoiceDelivery, state: CallState) -> None:
        """Claim the answer token for this call and bind the call to its customer (blocking)."""
        voice = delivery.voice
        call, replayed = outbound.claim(redis, delivery.inbound.arg("token"), voice.call_id)
        if call is None:
            logger.warning("%s: outbound answer for call %s with an unknown, expired or used token",
                           self.name(), voice.call_id)
            return
        delivery.answer, delivery.replayed = call, replayed
        state.customer_id, state.origin = call.customer_id, outbound.ORIGIN
        outbound.bind(redis, self.name(), voice.call_id, call.customer_id, CALL_TTL)
        if not replayed:
            record_event(redis, outbound.CALL_STARTED, channel=self.name(), call_id=voice.call_id,
                         customer_id=call.customer_id, direction="outbound", context=call.context)

    def _record_status(self, redis: Any, state: CallState, voice: VoiceRequest, emit: Callable[..., None]) -> None:
        status = (voice.status or "").lower()
        state.record_status(redis, status, voice.received_at)
        if status == "completed":
            ended_by = state.ended_by or "caller"
            if ended_by == "caller":
                emit(CALLER_HANGUP, turn=state.turn)
            emit(CALL_COMPLETED, ended_by=ended_by, duration=voice.duration, turns=state.turn)
        elif status in self.terminal_statuses:
            emit(CALL_FAILED, status=status)

    async def handle_envelope(
        self, delivery: VoiceDelivery, envelope: Envelope, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Outcome:
        """At a call start, begin the customer lookups as soon as the caller is identified."""
        voice = delivery.voice
        if voice.event != EVENT_CALL:
            return await super().handle_envelope(delivery, envelope, on_new_message)

        async def forward(message: UserMessage) -> Any:
            self.start_prefetch(delivery.inbound, voice.call_id, message.sender_id)
            return await on_new_message(message)

        return await super().handle_envelope(delivery, envelope, forward)

    def identify(self, delivery: Delivery, envelope: Envelope) -> Turn:
        """An outbound call's turns belong to the customer it was placed for, with low trust.

        The number we dialled may be unknown to the identity index, or known
        for someone else: neither matters, the call was bound when answered.
        Every other call is identified by its caller id (the base pipeline).
        """
        state = getattr(delivery, "state", None)
        if state is None or state.origin != outbound.ORIGIN or not state.customer_id:
            return super().identify(delivery, envelope)
        who = identity.Identity(state.customer_id, Trust.LOW.value, False, outbound.ORIGIN)
        text = self.message_text(envelope, state.customer_id) if envelope.readable else None
        return Turn(state.customer_id, who, None, text, source=source_of(delivery, envelope))

    def can_place_calls(self) -> bool:
        """Whether every setting outbound calls need is set (the journey worker asks before choosing a call)."""
        base = (self.config.get("public_base_url") or "").strip()
        return bool(base) and all(self.outbound_settings().values())

    async def place_call(
        self, customer_id: str, number: str, prompt: str, context: Optional[Dict[str, str]] = None
    ) -> PlacedCall:
        """Phone ``number`` for the conversation ``customer_id``; the callee first hears ``prompt``.

        ``prompt`` must already be in the customer's conversation (a bot
        utterance); the answer sends nothing to Rasa, and what the callee says
        is a turn of ``customer_id``'s conversation. ``context`` (a few short
        strings: journey, instance, step; never personal data) is kept with
        the call. Never raises: a missing setting, a bad argument or a
        provider failure is a ``PlacedCall`` with ``ok`` False and ``error``
        (``retry_after`` when the provider asked to wait). See
        ``connectors.voice.outbound``.
        """
        phone, problem = outbound.check_request(customer_id, number, prompt, context)
        if problem:
            return PlacedCall(False, error=problem)
        base = (self.config.get("public_base_url") or "").rstrip("/")
        needed = dict(self.outbound_settings(), **{self.credential_env.get("public_base_url", "public_base_url"): base})
        missing = [name for name, value in needed.items() if not value]
        if missing:
            return PlacedCall(False, error=f"outbound calls on {self.name()} are not configured: set {', '.join(missing)}")
        redis = self.redis_client()
        token = outbound.new_token()
        call = OutboundCall(customer_id, prompt.strip(), dict(context or {}))
        try:
            await run_sync(outbound.store, redis, token, call)
        except Exception as exc:
            logger.exception("%s: could not store an outbound call's token", self.name())
            return PlacedCall(False, error=f"could not store the call's answer token ({type(exc).__name__})")
        try:
            placed = await self.request_call(phone, outbound.answer_url(base, self.name(), token),
                                             outbound.status_url(base, self.name()), call.context)
        except Exception as exc:  # a provider library's surprise must not reach the worker
            logger.exception("%s: placing an outbound call failed", self.name())
            placed = PlacedCall(False, error=f"placing the call failed ({type(exc).__name__})")
        if placed.ok and placed.call_id:
            await run_sync(self._placed, redis, placed.call_id, call)
        elif placed.ok:
            placed = PlacedCall(False, status=placed.status, error="the provider accepted the call but gave no call id")
        if not placed.ok:
            await run_sync(outbound.discard, redis, token)
            logger.warning("%s: outbound call for %s not placed: %s", self.name(), customer_id, placed.error)
        return placed

    def _placed(self, redis: Any, call_id: str, call: OutboundCall) -> None:
        outbound.bind(redis, self.name(), call_id, call.customer_id, CALL_TTL)
        record_event(redis, outbound.CALL_PLACED, channel=self.name(), call_id=call_id,
                     customer_id=call.customer_id, context=call.context)

    def start_prefetch(self, inbound: Inbound, call_id: str, customer_id: str) -> None:
        """Prefetch profile, open cases and conversation (off with ``VOICE_PREFETCH=false``)."""
        if not self.settings.flag("VOICE_PREFETCH"):
            return
        agent = inbound.agent
        loaders = prefetch.default_loaders(customer_id, getattr(agent, "tracker_store", None))
        self.prefetcher.start(f"{self.name()}:{call_id}", customer_id, loaders, redis=self._redis)

    def message_text(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """Keypad 0 asks for a human; a choice's digit or spoken title becomes its payload."""
        if envelope.kind == KIND_TEXT:
            dtmf = envelope.extra.get("input_mode") == "dtmf"
            chosen = chosen_payload(
                self.redis_client(), self.name(), envelope.extra["call_sid"],
                envelope.extra.get("digits") if dtmf else None, None if dtmf else envelope.text,
            )
            if chosen:
                envelope.extra["chosen_payload"] = chosen
                return chosen
        return super().message_text(envelope, customer_id)

    def get_output_channel(self) -> VoiceOutput:
        """A collector (see ``VoiceOutput``)."""
        return self.output_class(self.config, self.sender, redis=self._redis)

    def output_channel_for(self, delivery: VoiceDelivery, envelope: Envelope) -> VoiceOutput:
        """A fresh collector per webhook; its messages are rendered into the response."""
        delivery.output = self.get_output_channel()
        return delivery.output

    # ---------------------------------------------------------------- responding

    async def receive(self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> HTTPResponse:
        """The base pipeline; a failure after verification still answers the caller politely.

        The caller hears an apology and the call ends, rather than the platform
        playing its own error message.
        """
        result = await super().receive(inbound, on_new_message)
        if result.status >= 500 and inbound.route != EVENT_STATUS:
            return self._document(self.render(inbound, Prompt([escape(UNAVAILABLE)], hangup=True), ""))
        return result

    async def build_response(self, delivery: VoiceDelivery) -> HTTPResponse:
        """The voice document for the platform (rendered once the call state is at hand)."""
        try:
            return await self.respond(delivery)
        except Exception:
            logger.exception("%s: could not answer call %s", self.name(), delivery.voice.call_id)
            return self._document(self.render(delivery.inbound, Prompt([escape(UNAVAILABLE)], hangup=True), ""))

    def _document(self, body: str) -> HTTPResponse:
        return response.text(body, content_type=self.content_type)

    async def respond(self, delivery: VoiceDelivery) -> HTTPResponse:
        """Render the next prompt for the call and remember it."""
        voice, state, outcomes = delivery.voice, delivery.state, delivery.outcomes
        redis = self.redis_client()
        if voice.event == EVENT_STATUS:
            if voice.status and voice.status.lower() in self.terminal_statuses:
                self.prefetcher.cancel(f"{self.name()}:{voice.call_id}")
                await run_sync(live.ended, redis, state.customer_id, self.name(), voice.call_id)
            return self._document(self.status_body())
        if voice.event == EVENT_ANSWER:
            return await self._answer(delivery)
        outcome = outcomes[0] if outcomes else None
        if outcome is not None and outcome.status in ("duplicate", "in_progress") and state.last_body:
            return self._document(state.last_body)
        if outcome is not None and outcome.customer_id:
            state.customer_id = outcome.customer_id
        if outcome is not None and outcome.message is not None:
            state.origin = (outcome.message.metadata or {}).get("origin") or state.origin
        waiting = await run_sync(live.take_messages, redis, self.name(), state.call_id) if state.customer_id else []
        if outcome is None:
            prompt = Prompt(choices=[Choice(**c) for c in state.choices]) if waiting else self._after_silence(state)
        elif outcome.status in ("failed", "limited", "in_progress", "duplicate"):
            prompt = Prompt([escape(TROUBLE)])
        else:
            output = delivery.output
            prompt = build_prompt(output.messages if output else [])
            await self._offer_elsewhere(delivery.inbound, state, prompt)
            self._route_transfer(state, prompt)
        if waiting:
            # An agent wrote from the desk meanwhile: the caller hears it first.
            prompt.parts[:0] = build_prompt(waiting).parts
            state.no_input = 0
        if state.customer_id and not prompt.hangup and not prompt.transfer_to:
            call = live.LiveCall(self.name(), state.call_id, state.origin or "created")
            await run_sync(live.on_turn, redis, state.customer_id, call)
        body = await run_sync(self._commit, delivery.inbound, state, prompt)
        return self._document(body)

    async def _answer(self, delivery: VoiceDelivery) -> HTTPResponse:
        """An outbound call was answered: speak the prompt and listen (or end a call nobody expects)."""
        state, call = delivery.state, delivery.answer
        if call is None:
            return self._document(self.render(delivery.inbound, Prompt([escape(outbound.HANGUP_TEXT)], hangup=True), ""))
        if delivery.replayed and state.last_body:
            return self._document(state.last_body)
        prompt = build_prompt([{"text": call.prompt}])
        redis = self.redis_client()
        await run_sync(live.on_turn, redis, call.customer_id, live.LiveCall(self.name(), state.call_id, outbound.ORIGIN))
        body = await run_sync(self._commit, delivery.inbound, state, prompt)
        return self._document(body)

    def transfer_target(self) -> Optional[str]:
        """Where a handed-over call goes: a phone number or SIP URI, or None.

        ``<CHANNEL>_TRANSFER_TO`` (e.g. ``TWILIO_VOICE_TRANSFER_TO``) wins over
        ``VOICE_TRANSFER_TO``; with neither, the call stays with the bot and the
        case waits in the desk's queue.
        """
        own = f"{self.name().upper()}_TRANSFER_TO"
        return (self.settings.get_raw(own) if own in VARIABLES else None) or self.settings.get_raw("VOICE_TRANSFER_TO")

    def _route_transfer(self, state: CallState, prompt: Prompt) -> None:
        if not prompt.transfer:
            return
        target = self.transfer_target()
        if not target:
            logger.info("%s call %s: handoff without a transfer target; the case stays queued", self.name(), state.call_id)
            return
        prompt.transfer_to = target
        prompt.choices = []
        record_event(self.redis_client(), TRANSFERRED, channel=self.name(), call_id=state.call_id,
                     customer_id=state.customer_id, target=target)

    def _after_silence(self, state: CallState) -> Prompt:
        if state.no_input >= MAX_NO_INPUT:
            return Prompt([escape(GOODBYE)], hangup=True)
        choices = [Choice(**c) for c in state.choices]
        return Prompt([escape(NOT_CAUGHT)] + state.parts, choices=choices)

    def _commit(self, inbound: Inbound, state: CallState, prompt: Prompt) -> str:
        """Render, then store turn, prompt, timing and choices (blocking)."""
        if prompt.choices and not state.human_hint_given and not any(c.key == HUMAN_KEY for c in prompt.choices):
            prompt.parts.append(escape(HUMAN_HINT))
            state.human_hint_given = True
        state.turn += 1
        body = self.render(inbound, prompt, self.action_url(inbound, state.turn))
        redis = self.redis_client()
        state.prompt_at = time.time()
        state.prompt_seconds = prompt.seconds
        state.parts = [p for p in prompt.parts if p != escape(NOT_CAUGHT)]
        state.choices = [c.__dict__ for c in prompt.choices]
        state.last_body = body
        if prompt.hangup:
            state.ended_by = "bot"
        state.save(redis)
        store_choices(redis, self.name(), state.call_id, prompt.choices)
        logger.debug("%s call %s turn %d: %s", self.name(), state.call_id, state.turn, spoken_preview(prompt.fragment))
        return body
