"""Reading the conversation: who the customer is and what they have told us.

Connectors put channel-neutral metadata on every user message (``trust``,
``channel_label``, ``previous_channel`` ...); fulfillment reads it here and
nowhere else, and never branches on which channel a message came from.
"""
from typing import Any, Dict, Optional

from rasa_sdk import Tracker

TRUST_ORDER = ("anonymous", "low", "verified")


def customer_ref(tracker: Tracker) -> str:
    """The conversation id, which Threadline makes the customer's id."""
    return tracker.sender_id


def message_metadata(tracker: Tracker) -> Dict[str, Any]:
    """Metadata of the latest user message (empty when there is none)."""
    return (tracker.latest_message or {}).get("metadata") or {}


def trust_level(tracker: Tracker) -> str:
    """How sure we are of who the customer is: anonymous, low or verified."""
    trust = message_metadata(tracker).get("trust")
    return trust if trust in TRUST_ORDER else "anonymous"


def is_verified(tracker: Tracker) -> bool:
    """Whether personal data may be shown without step-up verification."""
    return trust_level(tracker) == "verified"


def latest_text(tracker: Tracker) -> str:
    """The customer's latest message text."""
    return (tracker.latest_message or {}).get("text") or ""


def latest_intent(tracker: Tracker) -> Optional[str]:
    """Name of the latest user intent."""
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def entity_value(tracker: Tracker, entity: str) -> Optional[str]:
    """The first value of ``entity`` in the latest user message."""
    return next(tracker.get_latest_entity_values(entity), None)
