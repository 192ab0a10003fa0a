"""Journeys inside the rasa server: the worker, and how a journey step reaches the customer.

``JourneysInput`` receives no customer messages; it starts the journey worker
(``threadline.journeys.worker``) when the server starts (unless
``JOURNEY_WORKER=off``) and stops it cleanly, and serves ``GET
/webhooks/journeys/`` (health: which journeys are defined, the queue depth).
Operators start, list and cancel journeys from the desk
(``/webhooks/agent/journeys``) or with ``python -m threadline.journeys``.

``ServerDeliverer`` is how a step is sent, through the same parts as every
message the bot sends on its own:

* a message step renders its domain response with Rasa's own NLG (slots and
  the journey's context fill its variables; channel-specific variations
  apply), under the conversation's lock, and sends it through the channel's
  ``ThreadlineOutput`` (consent, WhatsApp's window and the step's template,
  platform rendering, retries). Sent, it is appended to the customer's
  conversation as the bot's turn with the journey in its metadata, together
  with the step's slots (``journey_offer``, ...), so the customer's answer on
  any channel is read in that context ("yes, Tuesday works");
* a call step has the voice channel phone the customer
  (``connectors.voice.outbound``) with the rendered line, which is recorded
  the same way; the callee's answer continues the same conversation.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional

from rasa.core.actions.action import create_bot_utterance
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.core.events import Event, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import registry
from connectors.agent.conversation import Conversation
from connectors.base import run_sync
from threadline import identity
from threadline.journeys import definitions, service, store
from threadline.journeys.worker import JourneyWorker, SendOutcome

logger = logging.getLogger(__name__)

OFFER_SLOT = "journey_offer"


def step_events(claim: store.ClaimedStep, step: definitions.Step) -> List[Event]:
    """The slots a step sets in the conversation (``$name`` values come from the journey's context)."""
    events: List[Event] = []
    if step.offer:
        events.append(SlotSet(OFFER_SLOT, step.offer))
    for slot, value in step.slots.items():
        if isinstance(value, str) and value.startswith("$"):
            value = claim.context.get(value[1:])
        if value is not None:
            events.append(SlotSet(slot, value))
    return events


def journey_metadata(claim: store.ClaimedStep, channel: str) -> Dict[str, Any]:
    """What a journey's bot turn carries: which journey, which step, where it went."""
    return {"journey": claim.journey, "journey_instance": claim.instance_id, "journey_step": claim.step_name,
            "delivery_channel": channel}


class ServerDeliverer:
    """Sends journey steps with the running server's agent and channels (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    @property
    def agent(self) -> Any:
        """Rasa's agent (tracker store, lock store, domain, NLG)."""
        return self.app.ctx.agent

    def _input(self, name: str) -> Optional[InputChannel]:
        for channel in registry.input_channels(self.app):
            if channel.name() == name:
                return channel
        return None

    def reachable(self, customer_ref: str, channel: str) -> bool:
        """A message channel needs an address and an output that pushes; a voice channel, outbound calling."""
        if channel in definitions.CALL_CHANNELS:
            voice = self._input(channel)
            return voice is not None and bool(getattr(voice, "can_place_calls", lambda: False)())
        if registry.output_channel(self.app, channel) is None:
            return False
        return bool(identity.address_for(customer_ref, channel))

    def phone_of(self, customer_ref: str) -> Optional[str]:
        """A phone number the customer used (a call) or proved (WhatsApp), in E.164."""
        addresses = identity.addresses(customer_ref)
        for channel in definitions.CALL_CHANNELS:
            number = addresses.get(channel) or ""
            if number.startswith("+"):
                return number
        whatsapp = addresses.get("whatsapp") or ""
        if whatsapp.isdigit():
            return identity.normalise_phone("+" + whatsapp)
        return None

    async def _tracker(self, customer_ref: str) -> DialogueStateTracker:
        return await Conversation(self.app, customer_ref).tracker()

    async def _render(self, tracker: DialogueStateTracker, claim: store.ClaimedStep, step: definitions.Step,
                      channel: str) -> Optional[Dict[str, Any]]:
        rendered = await self.agent.nlg.generate(step.response, tracker, channel, **claim.context)
        return dict(rendered) if rendered else None

    async def send_message(self, claim: store.ClaimedStep, journey: definitions.Journey,
                           step: definitions.Step, channel: str) -> SendOutcome:
        """Render, send on ``channel``, and append the turn to the conversation (under its lock)."""
        output = registry.output_channel(self.app, channel)
        if output is None:
            return SendOutcome("failed", f"the {channel} channel is not running")
        output.keep_undelivered = False  # the worker retries the step itself
        async with self.agent.lock_store.lock(claim.customer_ref):
            tracker = await self._tracker(claim.customer_ref)
            events = step_events(claim, step)
            for event in events:
                tracker.update(event, self.agent.domain)
            rendered = await self._render(tracker, claim, step, channel)
            if rendered is None:
                return SendOutcome("failed", f"{step.response} rendered nothing")
            message = dict(rendered)
            if step.template:
                message["template"] = step.template  # WhatsApp uses it outside the 24-hour window
            if journey.purpose == "marketing":
                message["custom"] = {**(message.get("custom") or {}), "purpose": "marketing"}
            await output.send_response(claim.customer_ref, message)
            report = output.last_report
            if report is not None and not report.ok:
                errors = "; ".join(report.errors)
                if errors.startswith("suppressed: "):
                    return SendOutcome("suppressed", errors[len("suppressed: "):])
                status = next((s for s in reversed(report.statuses) if s is not None), None)
                return SendOutcome("failed", errors, status, report.retry_after)
            bot = create_bot_utterance(rendered)
            state = "queued" if report is not None and report.queued else "sent"
            bot.metadata = {**(bot.metadata or {}), **journey_metadata(claim, channel), "delivery": state,
                            "delivery_reason": report.queued if report is not None else None}
            tracker.update(bot, self.agent.domain)
            await self.agent.tracker_store.save(tracker)
        return SendOutcome("sent")

    async def place_call(self, claim: store.ClaimedStep, journey: definitions.Journey,
                         step: definitions.Step, channel: str, number: str) -> SendOutcome:
        """Phone the customer on ``channel``; the opening line is the step's response, kept in the conversation."""
        voice = self._input(channel)
        if voice is None or not number:
            return SendOutcome("failed", "no voice channel or no phone number for the call")
        async with self.agent.lock_store.lock(claim.customer_ref):
            tracker = await self._tracker(claim.customer_ref)
            for event in step_events(claim, step):
                tracker.update(event, self.agent.domain)
            rendered = await self._render(tracker, claim, step, channel)
            text = (rendered or {}).get("text")
            if not text:
                return SendOutcome("failed", f"{step.response} has no text to speak")
            context = {"journey": claim.journey, "instance": str(claim.instance_id), "step": claim.step_name}
            placed = await voice.place_call(claim.customer_ref, number, text, context)
            if not placed.ok:
                return SendOutcome("failed", placed.error, placed.status, placed.retry_after)
            bot = create_bot_utterance({"text": text})
            bot.metadata = {**journey_metadata(claim, channel), "delivery": "sent", "call_sid": placed.call_id,
                            "delivery_reason": "spoken when the customer answers"}
            tracker.update(bot, self.agent.domain)
            await self.agent.tracker_store.save(tracker)
        return SendOutcome("sent", provider_ref=placed.call_id)


class JourneysInput(InputChannel):
    """Runs the journey worker in this rasa server; receives no customer messages."""

    @classmethod
    def name(cls) -> str:
        """Routes live under ``/webhooks/journeys/``."""
        return "journeys"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "JourneysInput":
        """Checks the journey definitions at start-up: a wrong file stops the server with what is wrong."""
        try:
            service.forget_definitions()
            service.journeys()
        except definitions.JourneyError as error:
            from rasa.shared.exceptions import RasaException

            raise RasaException(f"journeys/ has errors (make validate lists them):\n{error}") from None
        return cls()

    def __init__(self) -> None:
        self.worker: Optional[JourneyWorker] = None
        self._stop: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """Health, plus the worker's start and stop."""
        blueprint = Blueprint("threadline_journeys", __name__)

        @blueprint.listener("after_server_start")
        async def start_worker(app: Any, _: Any) -> None:
            if not service.worker_enabled():
                logger.info("journeys: JOURNEY_WORKER is off; this server runs no worker")
                return
            self.worker = JourneyWorker(ServerDeliverer(app))
            self._stop = asyncio.Event()
            self._task = asyncio.ensure_future(self._run_when_ready(app))

        @blueprint.listener("before_server_stop")
        async def stop_worker(*_: Any) -> None:
            if self._stop is not None:
                self._stop.set()
            if self._task is not None:
                try:
                    await asyncio.wait_for(self._task, timeout=10)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    self._task.cancel()

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            depth = await run_sync(store.queue_depth)
            return response.json({
                "status": "ok", "channel": self.name(), "worker": self.worker.name if self.worker else None,
                "journeys": sorted(service.journeys()), "queue": depth,
            })

        return blueprint

    async def _run_when_ready(self, app: Any) -> None:
        # Rasa loads the model in its own start-up listener; the worker needs its agent.
        while not self._stop.is_set():
            agent = getattr(app.ctx, "agent", None)
            if agent is not None and agent.is_ready() and getattr(agent, "nlg", None) is not None:
                break
            await asyncio.sleep(0.5)
        await self.worker.run(self._stop)
