"""The first stage of the two-stage fallback: "Did you mean ...?" in plain words."""
from typing import Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

FRIENDLY_INTENTS = {
    "greet": "Say hello",
    "say_goodbye": "Say goodbye",
    "say_thanks": "Say thanks",
    "affirm": "Yes",
    "deny": "No",
    "challenge_bot": "Ask if I'm a bot",
    "stop_task": "Stop what we're doing",
    "request_human": "Talk to a person",
    "provide_info": "Give some details",
    "check_order": "Track an order",
    "ask_order_address": "Check a delivery address",
    "book_appointment": "Book an appointment",
    "reschedule_appointment": "Move an appointment",
    "cancel_appointment": "Cancel an appointment",
    "report_problem": "Fix a problem",
    "ask_faq": "Ask a question about the store",
    "link_channel": "Continue on another app",
}


class ActionDefaultAskAffirmation(Action):
    """Offers the most likely intent as a button, and "Something else"."""

    def name(self) -> Text:
        return "action_default_ask_affirmation"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        ranking = (tracker.latest_message or {}).get("intent_ranking") or []
        candidates = [r["name"] for r in ranking if r.get("name") in FRIENDLY_INTENTS]
        if not candidates:
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        intent = candidates[0]
        dispatcher.utter_message(
            response="utter_ask_affirmation",
            suggestion=FRIENDLY_INTENTS[intent],
            buttons=[
                {"title": FRIENDLY_INTENTS[intent], "payload": f"/{intent}"},
                {"title": "Something else", "payload": "/out_of_scope"},
            ],
        )
        return []
