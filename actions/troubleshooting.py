"""Guided troubleshooting: one step at a time, asking whether each step worked."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import entity_value, latest_intent
from actions.continuity import known_before_latest
from actions.forms import TaskFormValidation, asked

# Each problem's steps, in the order a support agent would try them.
GUIDES: Dict[str, List[str]] = {
    "internet": [
        "Let's start with the router. Unplug it from power, wait 30 seconds, and plug it back in. Give it two minutes to start up.",
        "Check the cable from the wall socket to the router's **WAN** or **Internet** port: unplug it and push it back in firmly until it clicks.",
        "Look at the router's lights. If the internet light is red or off, hold the reset button on the back for 10 seconds, then wait three minutes.",
        "Try one device close to the router. If it connects there, move the router somewhere higher and more central, away from microwaves and metal.",
    ],
    "power": [
        "Plug the device into a wall socket you know works (try a lamp in it first), and leave it charging for 15 minutes.",
        "Try a different charging cable and adapter if you have one that fits.",
        "Hold the power button down for 20 seconds to force a restart, then press it once normally.",
    ],
}


class ActionStartTroubleshooting(Action):
    """Clears any earlier troubleshooting so a new problem starts at step one."""

    def name(self) -> Text:
        return "action_start_troubleshooting"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        events = [SlotSet("troubleshoot_outcome", None), SlotSet("troubleshoot_step", 0)]
        if entity_value(tracker, "problem_type") is None:
            events.append(SlotSet("troubleshoot_problem", None))
        return events


class ValidateTroubleshootForm(TaskFormValidation):
    """Moves to the next step on "no", and finishes on "yes" or after the last step.

    The same problem said again during the steps ("my wifi is still down")
    means the step did not help; another problem ("sorry, I meant my laptop
    won't turn on") starts that problem's steps from the first.
    """

    def name(self) -> Text:
        return "validate_troubleshoot_form"

    async def validate_troubleshoot_problem(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value not in GUIDES:
            return {"troubleshoot_problem": None}
        in_steps = asked(tracker) == "troubleshoot_outcome"
        if in_steps and known_before_latest(tracker, "troubleshoot_problem") == slot_value:
            result = await self.validate_troubleshoot_outcome("unresolved", dispatcher, tracker, domain)
            return dict(result, troubleshoot_problem=slot_value)
        dispatcher.utter_message(response="utter_troubleshoot_step_intro")
        return {"troubleshoot_problem": slot_value, "troubleshoot_step": 0, "troubleshoot_outcome": None}

    async def extract_troubleshoot_outcome(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """The problem described again during the steps, naming none ("it's still not working"): not fixed."""
        if asked(tracker) == "troubleshoot_outcome" and latest_intent(tracker) == "report_problem" \
                and entity_value(tracker, "problem_type") is None:
            return {"troubleshoot_outcome": "unresolved"}
        return {}

    def reask_slots(self):
        return {"troubleshoot_problem", "troubleshoot_outcome"}

    def reask(self, slot, dispatcher, tracker):
        dispatcher.utter_message(response="utter_reask_step" if slot == "troubleshoot_outcome" else "utter_reask")
        return None

    async def validate_troubleshoot_outcome(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if slot_value == "resolved":
            return {"troubleshoot_outcome": "resolved"}
        step = int(tracker.get_slot("troubleshoot_step") or 0) + 1
        steps = GUIDES.get(tracker.get_slot("troubleshoot_problem"), [])
        if step >= len(steps):
            return {"troubleshoot_outcome": "unresolved", "troubleshoot_step": step}
        return {"troubleshoot_outcome": None, "troubleshoot_step": step}


class ActionAskTroubleshootOutcome(Action):
    """Gives the current step and asks whether it worked."""

    def name(self) -> Text:
        return "action_ask_troubleshoot_outcome"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        steps = GUIDES.get(tracker.get_slot("troubleshoot_problem"), [])
        step = int(tracker.get_slot("troubleshoot_step") or 0)
        if not steps:
            return []
        step = min(step, len(steps) - 1)
        dispatcher.utter_message(
            text=f"Step {step + 1} of {len(steps)}: {steps[step]}\n\nDid that fix it?",
            buttons=[
                {"title": "Yes, it works", "payload": "/affirm"},
                {"title": "No, still broken", "payload": "/deny"},
            ],
        )
        return [SlotSet("feedback_topic", f"troubleshooting:{tracker.get_slot('troubleshoot_problem')}")]
