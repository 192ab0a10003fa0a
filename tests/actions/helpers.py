"""Building rasa-sdk trackers for action tests.

``metadata`` given to ``make_tracker`` is signed like the connector pipeline
signs it (its reserved keys become a ``TurnMetadata``), unless ``signed=False``:
then it is what a client might try to send.
"""
from dataclasses import fields
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker

from threadline import settings
from threadline.message import RESERVED_KEYS, LinkOutcome, Origin, Trust, TurnMetadata

_FIELDS = {f.name for f in fields(TurnMetadata)} - {"signed"}


def signed_metadata(metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``metadata`` as the connector pipeline would have written it (signed reserved part)."""
    metadata = dict(metadata or {})
    given = {k: metadata.pop(k) for k in list(metadata) if k in _FIELDS}
    given.setdefault("channel", "webchat")
    given.setdefault("channel_user_id", "visitor-under-test")
    given.setdefault("identity", "identity-under-test")
    given.setdefault("source", "source-under-test")
    given["trust"] = Trust.parse(given.get("trust", "anonymous"))
    given["origin"] = Origin(given.get("origin", "created"))
    if isinstance(given.get("link_result"), dict):
        given["link_result"] = LinkOutcome.from_dict(given["link_result"])
    typed = TurnMetadata(**given).to_metadata(settings.get().secret("metadata_key"))
    typed.update({k: v for k, v in metadata.items() if k not in RESERVED_KEYS})
    return typed


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
    signed: bool = True,
    extracted: Optional[Dict[str, Any]] = None,
) -> Tracker:
    """A tracker as the action server receives it from rasa.

    ``extracted`` are slots rasa's slot extraction set from the latest message
    (what a form validation validates); they are set on the tracker too.
    """
    metadata = signed_metadata(metadata) if signed else dict(metadata or {})
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
    for name, value in (extracted or {}).items():
        slots[name] = value
        all_events.append({"event": "slot", "name": name, "value": value})
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


def form_turn(
    form: str,
    slots: Optional[Dict[str, Any]] = None,
    requested: Optional[str] = None,
    text: str = "",
    intent: str = "provide_info",
    entities: Optional[List[Dict[str, Any]]] = None,
    candidates: Optional[Dict[str, Any]] = None,
    activating: bool = False,
    metadata: Optional[Dict[str, Any]] = None,
    sender_id: str = "c_test_customer",
    history: Optional[List[Dict[str, Any]]] = None,
) -> Tracker:
    """The tracker Rasa sends a form's validator after a customer message.

    ``slots`` are the values before the message; ``candidates`` what
    ``action_extract_slots`` took from it (set after the message, and again
    after the form's own marker, as Rasa's temporary tracker has them).
    With ``activating`` the form is being started by this very message;
    otherwise ``history`` is what happened in the form before it.
    """
    metadata = signed_metadata(metadata)
    slots = dict(slots or {})
    candidates = dict(candidates or {})
    events: List[Dict[str, Any]] = [] if activating else [{"event": "active_loop", "name": form}]
    events += list(history or [])
    events += [{"event": "slot", "name": k, "value": v} for k, v in slots.items()]
    if requested and not activating:
        events.append({"event": "slot", "name": "requested_slot", "value": requested})
    events.append({"event": "action", "name": "action_listen"})
    latest = {
        "intent": {"name": intent, "confidence": 0.9},
        "intent_ranking": [{"name": intent, "confidence": 0.9}],
        "entities": entities or [],
        "text": text,
        "metadata": metadata,
    }
    events.append({"event": "user", "text": text, "parse_data": latest, "metadata": metadata})
    events += [{"event": "slot", "name": k, "value": v} for k, v in candidates.items()]
    events.append({"event": "slot", "name": "requested_slot", "value": None if activating else requested})
    events.append({"event": "action", "name": form})
    events += [{"event": "slot", "name": k, "value": v} for k, v in candidates.items()]
    values = dict(slots, **candidates)
    values["requested_slot"] = None if activating else requested
    return Tracker(
        sender_id=sender_id,
        slots=values,
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={} if activating else {"name": form},
        latest_action_name=form,
    )


def entity(name: str, value: Any, extractor: str = "DIETClassifier") -> Dict[str, Any]:
    """One entity as NLU reports it."""
    return {"entity": name, "value": value, "extractor": extractor, "confidence_entity": 0.9}


def load_domain() -> Dict[str, Any]:
    """domain.yml as the action server receives it (forms, slots, responses)."""
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[2] / "domain.yml").read_text())
