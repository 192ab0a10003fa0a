"""Building rasa-sdk trackers for action tests."""
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker


def make_tracker(
    slots: Optional[Dict[str, Any]] = None,
    intent: str = "provide_info",
    text: str = "",
    entities: Optional[List[Dict[str, Any]]] = None,
    metadata: Optional[Dict[str, Any]] = None,
    active_loop: Optional[str] = None,
    events: Optional[List[Dict[str, Any]]] = None,
    sender_id: str = "c_test_customer",
    requested_slot: Optional[str] = None,
) -> Tracker:
    """A tracker as the action server receives it from rasa."""
    slots = dict(slots or {})
    if requested_slot:
        slots["requested_slot"] = requested_slot
    latest = {
        "intent": {"name": intent, "confidence": 0.99},
        "intent_ranking": [{"name": intent, "confidence": 0.99}],
        "entities": entities or [],
        "text": text,
        "metadata": metadata or {},
    }
    all_events = list(events or [])
    all_events.append({"event": "user", "text": text, "parse_data": latest, "metadata": metadata or {}})
    return Tracker(
        sender_id=sender_id,
        slots=slots,
        latest_message=latest,
        events=all_events,
        paused=False,
        followup_action=None,
        active_loop={"name": active_loop} if active_loop else {},
        latest_action_name="action_listen",
    )


def slot_events(events: List[Dict[str, Any]]) -> Dict[str, Any]:
    """{slot: value} of the SlotSet events an action returned."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def responses(dispatcher) -> List[str]:
    """Names of the responses an action sent."""
    return [m.get("response") for m in dispatcher.messages]
