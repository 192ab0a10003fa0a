"""The first stage of the two-stage fallback: "Did you mean ...?", offering a task in plain words."""
from typing import Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.tasks import suggestions



class ActionDefaultAskAffirmation(Action):
    """Offers the most likely intent as a button, and "Something else"."""

    def name(self) -> Text:
        return "action_default_ask_affirmation"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        ranking = (tracker.latest_message or {}).get("intent_ranking") or []
        titles = suggestions()
        candidates = [r["name"] for r in ranking if r.get("name") in titles]
        if not candidates:
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        intent = candidates[0]
        dispatcher.utter_message(
            response="utter_ask_affirmation",
            suggestion=titles[intent],
            buttons=[
                {"title": titles[intent], "payload": f"/{intent}"},
                {"title": "Something else", "payload": "/out_of_scope"},
            ],
        )
        return []
