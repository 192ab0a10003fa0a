"""Consent and erasure the customer asks for in words.

``action_opt_out`` (the ``opt_out`` intent: "please stop texting me") records
what a STOP keyword records, on the channel the customer wrote on, stops any
task in progress and confirms once. ``action_erase_my_data`` runs after the
customer confirmed ``utter_confirm_erasure``: it asks for the erasure, which
the rasa server carries out as soon as this turn is over
(``threadline.erasure``), so nothing of the conversation is written back.
"""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import customer_ref, turn
from actions.tasks import task_for
from threadline import consent, erasure


class ActionOptOut(Action):
    """Revoke messages on the customer's channel, end the task in progress, confirm once."""

    def name(self) -> Text:
        return "action_opt_out"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict[Text, Any]]:
        channel = turn(tracker).channel
        if channel:
            consent.apply_keyword(consent.Keyword(consent.OPT_OUT, "intent"), customer_ref(tracker), channel,
                                  source=consent.SOURCE_INTENT)
        dispatcher.utter_message(response="utter_opted_out")
        task = task_for((tracker.active_loop or {}).get("name"))
        return [ActiveLoop(None), SlotSet("requested_slot", None)] + [
            SlotSet(name, None) for name in (task.stop_clears if task else ())
        ]


class ActionEraseMyData(Action):
    """The customer confirmed: erase their data once this turn is over."""

    def name(self) -> Text:
        return "action_erase_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[Dict[Text, Any]]:
        erasure.request(customer_ref(tracker), owner=turn(tracker).owner, actor="customer")
        dispatcher.utter_message(response="utter_erasure_done")
        return []
