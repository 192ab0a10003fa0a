"""Stopping whatever is in progress, leaving the database untouched."""
from typing import Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

# The slots a stopped task leaves behind; what the customer told us about
# themselves (order number, email) is kept so nobody asks for it twice.
TASK_SLOTS = {
    "order_address_form": ["verification_postal_code"],
    "appointment_form": ["appointment_service", "appointment_time", "appointment_partial_date", "appointment_confirmed"],
    "appointment_reschedule_form": ["appointment_time", "appointment_partial_date", "appointment_confirmed"],
    "appointment_cancel_form": ["appointment_confirmed"],
    "troubleshoot_form": ["troubleshoot_problem", "troubleshoot_step", "troubleshoot_outcome"],
    "feedback_form": ["feedback_helpful", "feedback_comment", "feedback_topic", "troubleshoot_outcome"],
}


class ActionStopTask(Action):
    """Ends the active form, forgets its half-filled answers, confirms nothing changed."""

    def name(self) -> Text:
        return "action_stop_task"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        loop = tracker.active_loop.get("name")
        dispatcher.utter_message(response="utter_task_stopped")
        # Always close the loop (even when none is active) so rules see one shape.
        return [ActiveLoop(None), SlotSet("requested_slot", None)] + [
            SlotSet(name, None) for name in TASK_SLOTS.get(loop, [])
        ]
