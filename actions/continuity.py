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

from actions.context import customer_ref, event_turn, turn
from actions.formatting import with_article
from actions.tasks import task_for
from threadline import linking

_PROBLEMS = {"internet": "fixing your internet connection", "power": "getting your device to turn on"}


def known_before_latest(tracker: Tracker, slot: str) -> Optional[Any]:
    """The slot's value as it was before the customer's latest message.

    A value the latest message itself gave (set after it) does not count:
    "we were checking order 482913" only when 482913 was known already.
    """
    set_this_turn = False
    for index in range(len(tracker.events) - 1, -1, -1):
        event = tracker.events[index]
        if event.get("event") == "user":
            if not set_this_turn:
                return tracker.get_slot(slot)
            for earlier in reversed(tracker.events[:index]):
                if earlier.get("event") == "slot" and earlier.get("name") == slot:
                    return earlier.get("value")
            return None
        if event.get("event") == "slot" and event.get("name") == slot:
            set_this_turn = True
    return tracker.get_slot(slot)


def open_task(tracker: Tracker) -> Optional[str]:
    """A short description of the task in progress, from what was known before this message."""
    loop = (tracker.active_loop or {}).get("name")
    order = known_before_latest(tracker, "order_number")
    if loop in ("order_status_form", "order_address_form") and order:
        return f"checking order {order}"
    if loop == "appointment_form" and tracker.get_slot("appointment_service"):
        return f"booking {with_article(tracker.get_slot('appointment_service'))} appointment"
    if loop == "troubleshoot_form" and tracker.get_slot("troubleshoot_problem") in _PROBLEMS:
        return _PROBLEMS[tracker.get_slot("troubleshoot_problem")]
    task = task_for(loop)
    return task.description if task else None


def previous_channel_label(tracker: Tracker) -> Optional[str]:
    """Display name of the channel the customer used before this message's one."""
    meta = turn(tracker)
    if meta.previous_channel and meta.previous_channel != meta.channel and meta.previous_channel_label:
        return meta.previous_channel_label
    current = meta.channel
    user_events = [e for e in tracker.events if e.get("event") == "user"]
    for event in reversed(user_events[:-1]):
        meta = event_turn(event)
        if meta.channel and meta.channel != current:
            return meta.channel_label or meta.channel
    return None


def switch_acknowledgement(tracker: Tracker) -> Optional[Dict[Text, Any]]:
    """The message to send when this message arrives on a new channel mid-task."""
    meta = turn(tracker)
    message_id = meta.message_id
    if not meta.previous_channel or meta.previous_channel == meta.channel:
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
            events.append(SlotSet("continuity_acknowledged", turn(tracker).message_id))
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
            return [SlotSet("continuity_acknowledged", turn(tracker).message_id)]
        dispatcher.utter_message(response="utter_greet")
        return []


class ActionIssueLinkCode(Action):
    """Gives a one-time code that links another channel to this conversation."""

    def name(self) -> Text:
        return "action_issue_link_code"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        meta = turn(tracker)
        code = linking.issue_link_code(
            customer_ref(tracker), channel=meta.channel, channel_user_id=meta.channel_user_id,
            trust=meta.trust.value, origin=meta.origin.value,
        )
        dispatcher.utter_message(response="utter_link_code", code=code)
        return []


class ActionConfirmLink(Action):
    """Tells the customer whether the link code they sent worked."""

    def name(self) -> Text:
        return "action_confirm_link"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        meta = turn(tracker)
        result = meta.link_result
        if result is not None and result.ok:
            task = open_task(tracker)
            dispatcher.utter_message(response="utter_link_ok")
            if task:
                label = previous_channel_label(tracker)
                dispatcher.utter_message(
                    response="utter_continue_task", task=task, where=f" on {label}" if label else ""
                )
            return [SlotSet("continuity_acknowledged", meta.message_id)]
        if result is not None and result.pending:
            dispatcher.utter_message(response="utter_link_pending", channel=result.confirm_label or "your other channel")
        elif result is not None and result.reason == "rate_limited":
            dispatcher.utter_message(response="utter_link_rate_limited")
        else:
            dispatcher.utter_message(response="utter_link_failed")
        return []
