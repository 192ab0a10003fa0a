"""'Was this helpful?' after a resolved case, stored for reporting."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, latest_intent, latest_text
from actions.forms import TaskFormValidation, asked
from threadline.db import queries

# A "no" this long says why as well ("no, the steps were confusing"): no need to ask.
COMMENT_WORDS = 4


class ValidateFeedbackForm(TaskFormValidation):
    """Only asks for a comment when the answer was not helpful.

    "No, the steps were confusing" answers both questions at once; "actually
    it did help" while the comment is asked changes the answer; "no",
    "nothing" or "never mind" to the comment question means no comment (the
    answer is still saved).
    """

    def name(self) -> Text:
        return "validate_feedback_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        if tracker.get_slot("feedback_helpful") is True:
            return ["feedback_helpful"]
        return domain_slots

    def reask_slots(self):
        return {"feedback_helpful"}

    async def extract_feedback_comment(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = latest_text(tracker).strip()
        intent = latest_intent(tracker)
        if asked(tracker) == "feedback_helpful" and intent == "deny" and len(text.split()) >= COMMENT_WORDS:
            return {"feedback_comment": text}
        if asked(tracker) == "feedback_comment" and intent in ("stop_task", "deny") and len(text.split()) < COMMENT_WORDS:
            return {"feedback_comment": ""}
        return {}

    async def extract_feedback_helpful(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if asked(tracker) == "feedback_comment" and latest_intent(tracker) == "affirm":
            return {"feedback_helpful": True}  # "actually it did help"
        return {}

    async def validate_feedback_helpful(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value is True:
            return {"feedback_helpful": True, "feedback_comment": None}
        return {"feedback_helpful": slot_value}

    async def validate_feedback_comment(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("feedback_helpful") is True:
            return {"feedback_comment": None}
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
                tracker.get_slot("feedback_comment") or None,
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
