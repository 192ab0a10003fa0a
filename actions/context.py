"""Reading the conversation: who the customer is and what they have told us.

Connectors put typed, signed metadata on every customer message
(``threadline.message.TurnMetadata``); fulfillment reads it here and nowhere
else (``turn``), and never branches on which channel a message came from.
Metadata that is missing or not signed by the connector pipeline reads as an
anonymous message, so nothing a client sends can raise its own trust.
"""
import datetime as dt
from typing import Any, Dict, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rasa_sdk import Tracker

from threadline import settings
from threadline.message import Trust, TurnMetadata

TRUST_ORDER = tuple(level.value for level in Trust)


def _key() -> str:
    return settings.get().secret("metadata_key")


def turn(tracker: Tracker) -> TurnMetadata:
    """The typed metadata of the customer's latest message."""
    return TurnMetadata.read(message_metadata(tracker), _key())


def event_turn(event: Dict[str, Any]) -> TurnMetadata:
    """The typed metadata of one earlier ``user`` event of the tracker."""
    return TurnMetadata.read(event.get("metadata") or {}, _key())


def customer_ref(tracker: Tracker) -> str:
    """The conversation id, which Threadline makes the customer's id."""
    return tracker.sender_id


def message_metadata(tracker: Tracker) -> Dict[str, Any]:
    """Raw metadata of the latest user message (empty when there is none); prefer ``turn``."""
    return (tracker.latest_message or {}).get("metadata") or {}


def trust_level(tracker: Tracker) -> str:
    """How sure we are of who the customer is: anonymous, low or verified."""
    return turn(tracker).trust.value


def is_verified(tracker: Tracker) -> bool:
    """Whether the latest message came from a verified channel identity."""
    return turn(tracker).trust == Trust.VERIFIED


def latest_text(tracker: Tracker) -> str:
    """The customer's latest message text."""
    return (tracker.latest_message or {}).get("text") or ""


def latest_intent(tracker: Tracker) -> Optional[str]:
    """Name of the latest user intent."""
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def entity_value(tracker: Tracker, entity: str) -> Optional[str]:
    """The first value of ``entity`` in the latest user message."""
    return next(tracker.get_latest_entity_values(entity), None)


def _client_hint(metadata: Dict[str, Any], name: str) -> Any:
    client = metadata.get("client_metadata")
    if isinstance(client, dict) and client.get(name) is not None:
        return client.get(name)
    return metadata.get(name)


def customer_timezone(tracker: Tracker) -> Optional[ZoneInfo]:
    """The customer's time zone (an IANA name their client sent, e.g. the web chat's ``metadata.timezone``).

    This is a client hint, not signed: it only decides what "today" and
    "tomorrow" mean to the customer and grants nothing, so any client may set
    it. The latest message that carried one wins; None when none did (the
    store's time zone, which is the server's, is used).
    """
    for event in reversed(tracker.events or []):
        if event.get("event") != "user":
            continue
        zone = _client_hint(event.get("metadata") or {}, "timezone")
        if isinstance(zone, str) and 0 < len(zone) <= 64:
            try:
                return ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return None


def customer_now(tracker: Tracker) -> dt.datetime:
    """The customer's wall-clock now (naive): the store's when their time zone is not known."""
    zone = customer_timezone(tracker)
    return dt.datetime.now(zone).replace(tzinfo=None) if zone else dt.datetime.now()
