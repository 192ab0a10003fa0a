"""Answers to a proactive journey's offer: "yes, Tuesday works" books, "not now" declines.

A journey step (``journeys/*.yml``) that makes an offer sets ``journey_offer``
in the customer's conversation with its message; the rules in
``data/rules/journeys.yml`` send the customer's next message here. The offer
lasts for that one message: ``expire_offer`` (run on every turn by
``action_validate_slot_mappings``) clears it once the customer has moved on.
Slots the step set (the service to book) are already in the conversation,
and a day named in the answer fills the booking form's time slot the usual
way, so the form only asks what is still missing.
"""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

OFFER_SLOT = "journey_offer"


def expire_offer(tracker: Tracker) -> List[Dict[Text, Any]]:
    """Clear ``journey_offer`` when the customer already answered something else since it was made."""
    if not tracker.get_slot(OFFER_SLOT):
        return []
    user_messages = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            user_messages += 1
        elif event.get("event") == "slot" and event.get("name") == OFFER_SLOT and event.get("value"):
            break
    # The latest message is the answer the offer waits for; one before it means the offer went unanswered.
    return [SlotSet(OFFER_SLOT, None)] if user_messages > 1 else []


class ActionAcceptJourneyOffer(Action):
    """The customer accepted: the offer is used up, and the task's form (next in the rule) starts."""

    def name(self) -> Text:
        return "action_accept_journey_offer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        return [SlotSet(OFFER_SLOT, None)]


class ActionDeclineJourneyOffer(Action):
    """The customer declined: say it is fine, and forget the offer."""

    def name(self) -> Text:
        return "action_decline_journey_offer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        dispatcher.utter_message(response="utter_journey_offer_declined")
        return [SlotSet(OFFER_SLOT, None)]
