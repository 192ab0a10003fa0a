"""The tasks the assistant does for customers, in one registry, and stopping whatever is in progress.

Each ``Task`` is one form of domain.yml with everything the rest of the
fulfillment needs to know about it: how to describe it to a returning
customer ("checking an order"), which intents start it, which agent queue
takes it over, what the fallback offers for it, and which of its slots a stop
forgets (what the customer told us about themselves, such as an order number
or an email, is kept so nobody asks for it twice). ``tests/actions`` checks
the registry against domain.yml, so a new form cannot be forgotten here.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict


@dataclass(frozen=True)
class Task:
    """One thing the assistant does, as a form."""

    form: str
    description: str
    queue: str
    start_intents: Tuple[str, ...] = ()
    suggestion: Optional[str] = None
    stop_clears: Tuple[str, ...] = ()


TASKS: Dict[str, Task] = {
    task.form: task
    for task in (
        Task("order_status_form", "checking an order", "orders", ("check_order",), "Track an order",
             ("verification_postal_code",)),
        Task("order_address_form", "checking a delivery address", "orders", ("ask_order_address",),
             "Check a delivery address", ("verification_postal_code",)),
        Task("appointment_form", "booking an appointment", "appointments", ("book_appointment",),
             "Book an appointment",
             ("appointment_service", "appointment_time", "appointment_partial_date", "appointment_partial_time",
              "appointment_confirmed")),
        Task("appointment_reschedule_form", "moving your appointment", "appointments", ("reschedule_appointment",),
             "Move an appointment", ("appointment_time", "appointment_partial_date", "appointment_partial_time",
                                     "appointment_confirmed", "appointment_check_email")),
        Task("appointment_cancel_form", "cancelling your appointment", "appointments", ("cancel_appointment",),
             "Cancel an appointment", ("appointment_confirmed", "appointment_check_email")),
        Task("troubleshoot_form", "fixing a problem with your device", "technical", ("report_problem",),
             "Fix a problem", ("troubleshoot_problem", "troubleshoot_step", "troubleshoot_outcome")),
        Task("feedback_form", "collecting your feedback", "general", (), None,
             ("feedback_helpful", "feedback_comment", "feedback_topic", "troubleshoot_outcome")),
        Task("handoff_message_form", "leaving a message for our team", "general", (), None,
             ("handoff_message", "handoff_option")),
    )
}

# Intents that mean something other than an answer, inside any form: they are
# answered (data/rules/digressions.yml) and the form goes on. No free-text
# slot mapping may take them as a value (a test checks domain.yml).
DIGRESSIONS = ("greet", "ask_faq", "challenge_bot", "provide_link_code", "link_channel", "stop_task", "request_human",
               "opt_out")

# What else the two-stage fallback may suggest besides the tasks: never meta
# intents such as yes, no or hello, which are not something to be done.
OTHER_SUGGESTIONS = {
    "request_human": "Talk to a person",
    "ask_faq": "Ask a question about the store",
    "link_channel": "Continue on another app",
}


def task_for(form: Optional[str]) -> Optional[Task]:
    """The task a form belongs to."""
    return TASKS.get(form or "")


def task_started_by(intent: Optional[str]) -> Optional[Task]:
    """The task an intent starts, if any."""
    for task in TASKS.values():
        if intent in task.start_intents:
            return task
    return None


def suggestions() -> Dict[str, str]:
    """Intent -> button title for the fallback's "Did you mean...?"."""
    found = {intent: task.suggestion for task in TASKS.values() if task.suggestion for intent in task.start_intents}
    found.update(OTHER_SUGGESTIONS)
    return found


class ActionStopTask(Action):
    """Ends the active form, forgets its half-filled answers, confirms nothing changed."""

    def name(self) -> Text:
        return "action_stop_task"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        task = task_for((tracker.active_loop or {}).get("name"))
        dispatcher.utter_message(response="utter_task_stopped")
        # Always close the loop (even when none is active) so rules see one shape.
        return [ActiveLoop(None), SlotSet("requested_slot", None)] + [
            SlotSet(name, None) for name in (task.stop_clears if task else ())
        ]
