"""Handing the conversation to a person, with everything the bot learned.

Every trigger ends in :func:`escalate`:

* the customer asks for a person (intent ``request_human``; voice connectors
  send ``/request_human`` for "agent" or keypad 0) -> ``action_request_human``;
* "yes" to the person offered after unresolved troubleshooting -> the same
  action (rule in data/rules/handoff.yml), reason ``troubleshooting_unresolved``;
* two fallbacks in a row: the two-stage fallback gives up with
  ``action_default_fallback``, overridden here;
* frustration: the check in ``actions.sentiment`` (run after every message).

``escalate`` builds the context package, opens the case (or finds the open
one) and tells the customer honestly whether someone is available. It also
sends the custom payload ``{"handoff": {"case", "transfer", "queue", "reason",
"status"}}``: text channels drop it, a voice connector transfers the call when
``transfer`` is true. An agent accepting the case on the desk pauses the bot
(``ConversationPaused``); handing back resumes it with every slot intact.
"""
import time
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import (
    ActionExecuted,
    ActiveLoop,
    ConversationPaused,
    FollowupAction,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
)
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, entity_value, event_turn, latest_text, turn
from actions.continuity import open_task
from actions.forms import TaskFormValidation, asked
from actions.tasks import task_for, task_started_by
from actions.sentiment import sentiment_summary
from threadline import handoff
from threadline.db import cases
from threadline.message import HandoffSignal

TRANSCRIPT_TURNS = 20
# Slots that describe the bot's machinery rather than the customer's case.
INTERNAL_SLOTS = {"requested_slot", "session_started_metadata", "continuity_acknowledged", "handoff_sentiment"}


def transcript(tracker: Tracker, limit: int = TRANSCRIPT_TURNS) -> List[Dict[str, Any]]:
    """The recent turns, each with who spoke, what, when and on which channel.

    Bot turns carry the channel of the customer message they answered; a
    message an agent sent from the desk is marked with the agent's name.
    """
    turns = []
    channel = None
    for event in tracker.events:
        kind = event.get("event")
        if kind == "user":
            channel = event_turn(event).channel or channel
            intent = (event.get("parse_data") or {}).get("intent") or {}
            turns.append({"from": "customer", "text": event.get("text"), "channel": channel,
                          "intent": intent.get("name"), "confidence": intent.get("confidence"),
                          "time": event.get("timestamp")})
        elif kind == "bot" and event.get("text"):
            agent = (event.get("metadata") or {}).get("agent")
            turns.append({"from": f"agent:{agent}" if agent else "bot", "text": event.get("text"),
                          "channel": channel, "time": event.get("timestamp")})
    return turns[-limit:]


def channels_used(tracker: Tracker) -> List[str]:
    """Every channel the customer wrote on in this conversation, first use first."""
    channels: List[str] = []
    for event in tracker.events:
        channel = event_turn(event).channel if event.get("event") == "user" else None
        if channel and channel not in channels:
            channels.append(channel)
    return channels


def nlu_summary(tracker: Tracker) -> Dict[str, Any]:
    """The latest message as NLU read it: intent, top alternatives, entities."""
    latest = tracker.latest_message or {}
    intent = latest.get("intent") or {}
    return {
        "text": latest.get("text"),
        "intent": intent.get("name"),
        "confidence": intent.get("confidence"),
        "ranking": [
            {"name": r.get("name"), "confidence": r.get("confidence")}
            for r in (latest.get("intent_ranking") or [])[:3]
        ],
        "entities": [
            {k: e.get(k) for k in ("entity", "value", "confidence_entity", "extractor") if e.get(k) is not None}
            for e in latest.get("entities") or []
        ],
    }


def queue_for(tracker: Tracker, reason: str) -> str:
    """The agent queue that fits what the customer was doing."""
    if reason == "troubleshooting_unresolved":
        return "technical"
    task = task_for((tracker.active_loop or {}).get("name"))
    if task is not None:
        return task.queue
    recent = [((e.get("parse_data") or {}).get("intent") or {}).get("name")
              for e in reversed(tracker.events) if e.get("event") == "user"][:5]
    for intent in recent:
        started = task_started_by(intent)
        if started is not None:
            return started.queue
    return "general"


def context_package(tracker: Tracker, reason: str) -> Dict[str, Any]:
    """What an agent needs to take over without asking the customer again."""
    meta = turn(tracker)
    slots = {
        k: v for k, v in tracker.current_slot_values().items()
        if v not in (None, [], "") and k not in INTERNAL_SLOTS
    }
    return {
        "customer_id": customer_ref(tracker),
        "customer": {
            "id": customer_ref(tracker),
            "name": meta.profile_name,
            "trust": meta.trust.value,
            "locale": meta.locale,
            "new": meta.is_new_customer,
        },
        "trust": meta.trust.value,
        "channel": meta.channel,
        "channels": channels_used(tracker),
        "task": open_task(tracker),
        "active_loop": (tracker.active_loop or {}).get("name"),
        "intent": (tracker.latest_message or {}).get("intent"),
        "nlu": nlu_summary(tracker),
        "slots": slots,
        "transcript": transcript(tracker),
        "sentiment": sentiment_summary(tracker),
        "reason": reason,
        "reason_label": handoff.reason_label(reason),
        "escalated_at": time.time(),
    }


def escalate(dispatcher: CollectingDispatcher, tracker: Tracker, reason: str) -> List[Dict[Text, Any]]:
    """Open (or find) the customer's case, say what happens next; returns slot events only.

    Only ``SlotSet`` events, so the frustration check can use it during slot
    extraction, where Rasa keeps nothing else (but the messages).
    """
    opened = handoff.open_case(
        customer_ref(tracker), reason, context_package(tracker, reason), queue_for(tracker, reason)
    )
    case, staffing = opened.case, opened.staffing
    if not opened.created:
        dispatcher.utter_message(response="utter_handoff_already_open", case=case.id)
    elif staffing.reason == "outside_hours":
        dispatcher.utter_message(
            response="utter_handoff_outside_hours", case=case.id, hours=staffing.hours,
            opens=staffing.opens or "as soon as we open",
        )
    elif staffing.reason == "queue_full":
        dispatcher.utter_message(response="utter_handoff_queue_full", case=case.id)
    elif reason == "repeated_fallback":
        dispatcher.utter_message(response="utter_handoff_queued_after_fallback", case=case.id)
    elif reason == "frustration":
        dispatcher.utter_message(response="utter_handoff_queued_after_frustration", case=case.id)
    else:
        dispatcher.utter_message(response="utter_handoff_queued", case=case.id)
    dispatcher.utter_message(json_message=HandoffSignal(
        case=case.id, transfer=staffing.available, queue=case.queue, reason=case.reason, status=case.status,
    ).to_custom())
    return [SlotSet("handoff_case", case.id), SlotSet("handoff_reason", None)]


def _previous_action(tracker: Tracker) -> Optional[str]:
    """The last action the bot ran before the customer's latest message."""
    seen_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            seen_user = True
        elif seen_user and event.get("event") == "action" and event.get("name") != "action_listen":
            return event.get("name")
    return None


def escalation_reason(tracker: Tracker) -> str:
    """Why the customer is being handed over, when they asked (or said yes to) a person."""
    if tracker.get_slot("handoff_reason"):
        return tracker.get_slot("handoff_reason")
    if _previous_action(tracker) == "utter_troubleshoot_unresolved":
        return "troubleshooting_unresolved"
    return "customer_request"


class ActionRequestHuman(Action):
    """Escalates on request; on a queued case, takes a callback request or a message."""

    def name(self) -> Text:
        return "action_request_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        # Always close the loop (even when none is active) so rules see one shape.
        closing = [ActiveLoop(None), SlotSet("requested_slot", None)]
        option = entity_value(tracker, "handoff_option")
        if option in ("callback", "message") and cases.open_case_for(customer_ref(tracker)):
            return [SlotSet("handoff_option", option)] + closing + [FollowupAction("handoff_message_form")]
        return escalate(dispatcher, tracker, escalation_reason(tracker)) + closing


def _last_intents(tracker: Tracker, count: int) -> List[Optional[str]]:
    """The latest ``count`` user intents, newest first; a rewind counts as a turn without one."""
    intents: List[Optional[str]] = []
    for event in reversed(tracker.events):
        if len(intents) == count:
            break
        if event.get("event") == "user":
            intents.append(((event.get("parse_data") or {}).get("intent") or {}).get("name"))
        elif event.get("event") == "rewind":
            intents.append(None)
    return intents


def gave_up_twice(tracker: Tracker) -> bool:
    """Whether the two-stage fallback failed: two fallbacks in a row, or "something else" twice."""
    return _last_intents(tracker, 2) == ["nlu_fallback", "nlu_fallback"] or _last_intents(tracker, 3) == [
        "out_of_scope", "nlu_fallback", "out_of_scope"
    ]


class ActionDefaultFallback(Action):
    """Rasa's last resort: after two failed clarifications, bring in a person.

    When the policies themselves are unsure (core fallback), it behaves like
    Rasa's own: ``utter_default`` and the message is forgotten.
    """

    def name(self) -> Text:
        return "action_default_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        if gave_up_twice(tracker) and not tracker.get_slot("handoff_case"):
            # The revert comes first so that it does not undo the slots set after it.
            return [UserUtteranceReverted()] + escalate(dispatcher, tracker, "repeated_fallback")
        dispatcher.utter_message(response="utter_default")
        return [UserUtteranceReverted()]


# A short reply that changes how the team should answer rather than saying something for them.
_WANTS_CALL = ("call me", "ring me", "phone me", "call back", "callback", "give me a call")
_WANTS_MESSAGE = ("leave a message", "send a message", "write a message", "message instead", "i'll write",
                  "just write", "rather write", "text me")
SWITCH_WORDS = 8


def option_asked_for(text: str) -> Optional[str]:
    """``callback`` or ``message`` when a short reply asks for that instead ("actually, call me back")."""
    lowered = text.lower()
    if len(lowered.split()) > SWITCH_WORDS or any(ch.isdigit() for ch in lowered):
        return None  # a real message (or a number to call): keep it as written
    if any(cue in lowered for cue in _WANTS_MESSAGE):
        return "message"
    if any(cue in lowered for cue in _WANTS_CALL):
        return "callback"
    return None


class ValidateHandoffMessageForm(TaskFormValidation):
    """The message (or callback request) for the team; "call me back instead" switches what is asked."""

    def name(self) -> Text:
        return "validate_handoff_message_form"

    async def validate_handoff_message(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = str(slot_value or "").strip()
        wanted = option_asked_for(text) if asked(tracker) == "handoff_message" and text == latest_text(tracker) else None
        if wanted and wanted != (tracker.get_slot("handoff_option") or "message"):
            return {"handoff_message": None, "handoff_option": wanted}
        return {"handoff_message": text[:2000] or None}


class ActionAskHandoffMessage(Action):
    """Asks for the message to the team, or for callback details."""

    def name(self) -> Text:
        return "action_ask_handoff_message"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        if tracker.get_slot("handoff_option") == "callback":
            dispatcher.utter_message(response="utter_ask_handoff_callback")
        else:
            dispatcher.utter_message(response="utter_ask_handoff_message")
        return []


class ActionSaveHandoffMessage(Action):
    """Attaches the customer's message (or callback request) to their open case."""

    def name(self) -> Text:
        return "action_save_handoff_message"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        text = tracker.get_slot("handoff_message") or ""
        callback = tracker.get_slot("handoff_option") == "callback"
        events = [SlotSet("handoff_message", None), SlotSet("handoff_option", None)]
        case = cases.open_case_for(customer_ref(tracker))
        if case is None:  # closed meanwhile: the message opens a new case
            events += escalate(dispatcher, tracker, "customer_request")
            case = cases.open_case_for(customer_ref(tracker))
        handoff.leave_message(case.id, text, callback=callback)
        if callback:
            dispatcher.utter_message(response="utter_handoff_callback_saved", case=case.id)
        else:
            dispatcher.utter_message(response="utter_handoff_message_saved", case=case.id)
        return events + [SlotSet("handoff_case", case.id)]


class ActionSessionStart(Action):
    """Rasa's session start, plus: a conversation an agent owns stays paused.

    Rasa opens a new session after an hour without customer messages and
    replays only that session, which would quietly unpause the bot while an
    agent is still on the case.
    """

    def name(self) -> Text:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        events: List[Dict[Text, Any]] = [SessionStarted()]
        if (domain.get("session_config") or {}).get("carry_over_slots_to_new_session", True):
            events += [SlotSet(name, value) for name, value in tracker.current_slot_values().items()
                       if value is not None]
        if tracker.is_paused():
            events.append(ConversationPaused())
        events.append(ActionExecuted("action_listen"))
        return events
