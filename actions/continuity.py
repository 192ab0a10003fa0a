"""Carrying a conversation across channels: welcome back with context, link codes.

A customer who moves to another channel lands in the same conversation (the
connectors resolve every channel to one customer id). These actions make that
visible: they say what we were doing and where, so nobody repeats themselves.
"""
import abc
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, message_metadata
from threadline import identity

_TASKS = {
    "order_status_form": "checking an order",
    "order_address_form": "checking a delivery address",
    "appointment_form": "booking an appointment",
    "appointment_reschedule_form": "moving your appointment",
    "appointment_cancel_form": "cancelling your appointment",
    "troubleshoot_form": "fixing a problem with your device",
    "feedback_form": "collecting your feedback",
}
_PROBLEMS = {"internet": "fixing your internet connection", "power": "getting your device to turn on"}


def open_task(tracker: Tracker) -> Optional[str]:
    """A short description of the task in progress, or None."""
    loop = (tracker.active_loop or {}).get("name")
    order = tracker.get_slot("order_number")
    if loop in ("order_status_form", "order_address_form") and order:
        return f"checking order {order}"
    if loop == "appointment_form" and tracker.get_slot("appointment_service"):
        return f"booking a {tracker.get_slot('appointment_service')} appointment"
    if loop == "troubleshoot_form" and tracker.get_slot("troubleshoot_problem") in _PROBLEMS:
        return _PROBLEMS[tracker.get_slot("troubleshoot_problem")]
    return _TASKS.get(loop)


def previous_channel_label(tracker: Tracker) -> Optional[str]:
    """Display name of the channel the customer used before this message's one."""
    current = message_metadata(tracker).get("channel")
    user_events = [e for e in tracker.events if e.get("event") == "user"]
    for event in reversed(user_events[:-1]):
        meta = event.get("metadata") or {}
        if meta.get("channel") and meta.get("channel") != current:
            return meta.get("channel_label") or meta.get("channel")
    return None


def switch_acknowledgement(tracker: Tracker) -> Optional[Dict[Text, Any]]:
    """The message to send when this message arrives on a new channel mid-task."""
    meta = message_metadata(tracker)
    message_id = meta.get("message_id")
    if not meta.get("previous_channel") or meta.get("previous_channel") == meta.get("channel"):
        return None
    if message_id and tracker.get_slot("continuity_acknowledged") == message_id:
        return None
    task = open_task(tracker)
    if not task:
        return None
    label = previous_channel_label(tracker)
    where = f" on {label}" if label else ""
    return {"response": "utter_continue_task", "task": task, "where": where}


class ContinuityFormValidation(FormValidationAction, abc.ABC):
    """Base of every form validator: acknowledges a channel switch mid-form.

    When the customer's message is the first one on a new channel while a form
    is active, the reply starts with "Picking up where we left off on X: we were
    checking order 482913." before the form goes on. Subclass it instead of
    ``FormValidationAction``; being abstract it is never registered itself.
    """

    @abc.abstractmethod
    def name(self) -> Text:
        """``validate_<form name>``."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        acknowledgement = switch_acknowledgement(tracker)
        events: List[Dict[Text, Any]] = []
        if acknowledgement:
            dispatcher.utter_message(**acknowledgement)
            events.append(
                SlotSet("continuity_acknowledged", message_metadata(tracker).get("message_id"))
            )
        return events + await super().run(dispatcher, tracker, domain)


class ActionGreetCustomer(Action):
    """Greets; a returning customer mid-task is reminded what we were doing and where."""

    def name(self) -> Text:
        return "action_greet_customer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        task = open_task(tracker)
        if task:
            label = previous_channel_label(tracker)
            dispatcher.utter_message(
                response="utter_greet_returning", task=task, where=f" on {label}" if label else ""
            )
            return [SlotSet("continuity_acknowledged", message_metadata(tracker).get("message_id"))]
        dispatcher.utter_message(response="utter_greet")
        return []


class ActionIssueLinkCode(Action):
    """Gives a one-time code that links another channel to this conversation."""

    def name(self) -> Text:
        return "action_issue_link_code"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        code = identity.issue_link_code(customer_ref(tracker))
        dispatcher.utter_message(response="utter_link_code", code=code)
        return []


class ActionConfirmLink(Action):
    """Tells the customer whether the link code they sent worked."""

    def name(self) -> Text:
        return "action_confirm_link"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        result = message_metadata(tracker).get("link_result") or {}
        if result.get("ok"):
            task = open_task(tracker)
            dispatcher.utter_message(response="utter_link_ok")
            if task:
                label = previous_channel_label(tracker)
                dispatcher.utter_message(
                    response="utter_continue_task", task=task, where=f" on {label}" if label else ""
                )
            return [SlotSet("continuity_acknowledged", message_metadata(tracker).get("message_id"))]
        if result.get("reason") == "rate_limited":
            dispatcher.utter_message(response="utter_link_rate_limited")
        else:
            dispatcher.utter_message(response="utter_link_failed")
        return []
