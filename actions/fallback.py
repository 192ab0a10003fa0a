"""The first stage of the two-stage fallback: "Did you want to track an order?", offering a task in plain words.

Only tasks (and a person, a store question, another app) are ever offered:
``actions.tasks.suggestions`` leaves out meta intents such as yes, no or
hello, so "Did you want to: Yes?" cannot be asked.
"""
from typing import Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.tasks import suggestions


def as_phrase(title: str) -> str:
    """A button title inside a sentence: "Track an order" -> "track an order"."""
    return title[:1].lower() + title[1:]


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
            suggestion=as_phrase(titles[intent]),
            buttons=[
                {"title": titles[intent], "payload": f"/{intent}"},
                {"title": "Something else", "payload": "/out_of_scope"},
            ],
        )
        return []
