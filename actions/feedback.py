"""'Was this helpful?' after a resolved case, stored for reporting."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.continuity import ContinuityFormValidation

from actions.context import customer_ref
from threadline.db import queries


class ValidateFeedbackForm(ContinuityFormValidation):
    """Only asks for a comment when the answer was not helpful."""

    def name(self) -> Text:
        return "validate_feedback_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        if tracker.get_slot("feedback_helpful") is True:
            return ["feedback_helpful"]
        return domain_slots

    async def validate_feedback_comment(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return {"feedback_comment": str(slot_value or "").strip()[:2000]}


class ActionSaveFeedback(Action):
    """Stores the feedback and clears the finished case."""

    def name(self) -> Text:
        return "action_save_feedback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        helpful = tracker.get_slot("feedback_helpful")
        if helpful is not None:
            queries.record_feedback(
                customer_ref(tracker),
                bool(helpful),
                tracker.get_slot("feedback_comment"),
                tracker.get_slot("feedback_topic"),
            )
            dispatcher.utter_message(response="utter_feedback_thanks")
        return [
            SlotSet(name, None)
            for name in (
                "feedback_helpful", "feedback_comment", "feedback_topic",
                "troubleshoot_outcome", "troubleshoot_problem", "troubleshoot_step",
            )
        ]
