"""Carrying a conversation across channels: welcome back with context, link codes.

A customer who moves to another channel lands in the same conversation (the
connectors resolve every channel to one customer id). These actions make that
visible: they say what we were doing and where, so nobody repeats themselves.

Every form validation records the task it belongs to, the channel it was
worked on and when (``continuity_task*`` slots, carried across sessions). A
greeting within ``CONTINUITY_WINDOW_HOURS`` of that names it, open or finished
("Welcome back! I see we were booking an installation appointment on <the
channel it was on>. Let's finish that."). A previous channel is named only when the
context came from there. To a sender who may not see what the conversation
holds (a voice caller id matched to someone else's customer) the task is named
without personal data ("checking one of your orders"), and an order check goes
on only after its step-up, without asking for anything already given.
"""
import abc
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, event_turn, turn
from actions.formatting import say_datetime_safely, with_article
from actions.tasks import task_for
from threadline import linking, settings

_PROBLEMS = {"internet": "fixing your internet connection", "power": "getting your device to turn on"}
ORDER_TASKS = ("order_status_form", "order_address_form")


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


def describe_task(tracker: Tracker, form: Optional[str], private: bool = True) -> Optional[str]:
    """What we were doing, in words: with what was learned when ``private`` may be shown."""
    task = task_for(form)
    if task is None:
        return None
    order = known_before_latest(tracker, "order_number")
    if form in ORDER_TASKS:
        if not private:
            return "checking one of your orders"
        return f"checking order {order}" if order else task.description
    if form == "appointment_form":
        service = known_before_latest(tracker, "appointment_service")
        when = say_datetime_safely(known_before_latest(tracker, "appointment_time"))
        if not service:
            return task.description
        described = f"booking {with_article(service)} appointment"
        return f"{described} for {when}" if when and private else described
    if form == "troubleshoot_form" and tracker.get_slot("troubleshoot_problem") in _PROBLEMS:
        return _PROBLEMS[tracker.get_slot("troubleshoot_problem")]
    return task.description


def open_task(tracker: Tracker) -> Optional[str]:
    """A short description of the task in progress, from what was known before this message."""
    return describe_task(tracker, (tracker.active_loop or {}).get("name"),
                         private=turn(tracker).may_see_conversation_data)


def previous_channel_label(tracker: Tracker) -> Optional[str]:
    """Display name of the channel the customer used before this message's one."""
    meta = turn(tracker)
    if meta.previous_channel and meta.previous_channel != meta.channel and meta.previous_channel_label:
        return meta.previous_channel_label
    current = meta.channel
    user_events = [e for e in tracker.events if e.get("event") == "user"]
    for event in reversed(user_events[:-1]):
        earlier = event_turn(event)
        if earlier.channel and earlier.channel != current:
            return earlier.channel_label or earlier.channel
    return None


@dataclass(frozen=True)
class RecentTask:
    """The last task the customer worked on, where and how long ago."""

    form: str
    channel_label: Optional[str]
    at: float
    open: bool

    def where(self, tracker: Tracker) -> str:
        """" on <that channel>" when the task was worked on elsewhere, else nothing."""
        current = turn(tracker).channel_label
        if self.channel_label and self.channel_label != current:
            return f" on {self.channel_label}"
        return ""


def recent_task(tracker: Tracker) -> Optional[RecentTask]:
    """The last task worked on within ``CONTINUITY_WINDOW_HOURS`` (open or finished), if any."""
    form = tracker.get_slot("continuity_task")
    at = tracker.get_slot("continuity_task_at")
    active = (tracker.active_loop or {}).get("name")
    if active:
        return RecentTask(active, tracker.get_slot("continuity_task_channel") if form == active else None,
                          float(at or time.time()), True)
    if not form or task_for(form) is None or at is None:
        return None
    window = settings.get().number("CONTINUITY_WINDOW_HOURS") * 3600
    if time.time() - float(at) > window:
        return None
    return RecentTask(form, tracker.get_slot("continuity_task_channel"), float(at), False)


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
    """Base of every form validator: records the task, acknowledges a channel switch mid-form.

    When the customer's message is the first one on a new channel while a form
    is active, the reply starts with "Picking up where we left off on X: we were
    checking order 482913." before the form goes on. Every validation records
    the task, its channel and the time (``continuity_task*``), which is what a
    later greeting names. Subclass it instead of ``FormValidationAction``; being
    abstract it is never registered itself.
    """

    @abc.abstractmethod
    def name(self) -> Text:
        """``validate_<form name>``."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        first_reply = len(dispatcher.messages)
        validated = await super().run(dispatcher, tracker, domain)
        if not _fills_a_slot(validated):
            # Nothing was extracted: Rasa rejects the form only when the validation
            # sets no slot, which is what lets a digression rule ("stop", "continue
            # elsewhere") run. Bookkeeping slots here would swallow it.
            return validated
        acknowledgement = switch_acknowledgement(tracker)
        meta = turn(tracker)
        events: List[Dict[Text, Any]] = []
        if acknowledgement:
            dispatcher.utter_message(**acknowledgement)
            dispatcher.messages.insert(first_reply, dispatcher.messages.pop())  # said before the form's own replies
            events.append(SlotSet("continuity_acknowledged", meta.message_id))
        form = self.form_name()
        if task_for(form) is not None:
            events += [SlotSet("continuity_task", form), SlotSet("continuity_task_at", time.time())]
            if meta.channel_label:
                events.append(SlotSet("continuity_task_channel", meta.channel_label))
        return events + validated


def _fills_a_slot(events: List[Dict[Text, Any]]) -> bool:
    return any(e.get("event") == "slot" and e.get("name") != "requested_slot" for e in events)


class ActionGreetCustomer(Action):
    """Greets; a returning customer is reminded what we were doing and where.

    An open task: "Welcome back! I see we were ...{where}. Let's finish that."
    A finished one, recently: "Welcome back! Last time{where} we were ..." A
    sender who may not see the conversation's personal data hears it named
    without any ("checking one of your orders"); an order check then goes on
    with the order's step-up, the order number kept.
    """

    def name(self) -> Text:
        return "action_greet_customer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        recent = recent_task(tracker)
        meta = turn(tracker)
        if recent is None:
            dispatcher.utter_message(response="utter_greet")
            return []
        private = meta.may_see_conversation_data
        task = describe_task(tracker, recent.form, private=private)
        where = recent.where(tracker) or (f" on {previous_channel_label(tracker)}"
                                          if recent.open and previous_channel_label(tracker) else "")
        events: List[Dict[Text, Any]] = [SlotSet("continuity_acknowledged", meta.message_id)]
        if recent.open:
            dispatcher.utter_message(response="utter_greet_returning", task=task, where=where)
            return events
        if not private and recent.form in ORDER_TASKS and tracker.get_slot("order_number"):
            dispatcher.utter_message(response="utter_greet_recent_private", task=task, where=where)
            return events + [FollowupAction(recent.form)]
        dispatcher.utter_message(response="utter_greet_recent", task=task, where=where)
        return events


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
