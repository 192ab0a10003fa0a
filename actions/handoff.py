"""Handing the conversation to a person, with everything the bot learned."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, trust_level
from actions.continuity import open_task
from threadline.db import queries

TRANSCRIPT_TURNS = 20


def transcript(tracker: Tracker, limit: int = TRANSCRIPT_TURNS) -> List[Dict[str, Any]]:
    """The recent turns, each with who spoke, what, when and on which channel."""
    turns = []
    channel = None
    for event in tracker.events:
        kind = event.get("event")
        if kind == "user":
            channel = (event.get("metadata") or {}).get("channel") or channel
            turns.append({"from": "customer", "text": event.get("text"), "channel": channel,
                          "intent": (event.get("parse_data") or {}).get("intent", {}).get("name"),
                          "time": event.get("timestamp")})
        elif kind == "bot":
            turns.append({"from": "bot", "text": event.get("text"), "channel": channel,
                          "time": event.get("timestamp")})
    return turns[-limit:]


def context_package(tracker: Tracker, reason: str) -> Dict[str, Any]:
    """What an agent needs to take over without asking the customer again."""
    channels = []
    for event in tracker.events:
        channel = (event.get("metadata") or {}).get("channel") if event.get("event") == "user" else None
        if channel and channel not in channels:
            channels.append(channel)
    filled = {k: v for k, v in tracker.current_slot_values().items() if v not in (None, [], "")}
    return {
        "customer_id": customer_ref(tracker),
        "trust": trust_level(tracker),
        "channels": channels,
        "task": open_task(tracker),
        "intent": (tracker.latest_message or {}).get("intent"),
        "slots": filled,
        "transcript": transcript(tracker),
        "reason": reason,
    }


class ActionRequestHuman(Action):
    """Records a handoff request with its context and tells the customer honestly."""

    def name(self) -> Text:
        return "action_request_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        reason = tracker.get_slot("handoff_reason") or "customer_request"
        case = queries.record_handoff(customer_ref(tracker), reason, context_package(tracker, reason))
        dispatcher.utter_message(response="utter_handoff_queued", case=case)
        # Always close the loop (even when none is active) so rules see one shape.
        return [SlotSet("handoff_reason", None), ActiveLoop(None), SlotSet("requested_slot", None)]
