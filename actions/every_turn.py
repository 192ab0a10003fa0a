"""What runs after every customer message: ``action_validate_slot_mappings``.

Rasa's ``action_extract_slots`` calls it after every customer message, before
any policy predicts and whatever form is active. It is the one place a custom
action runs on every turn and may also speak: Rasa keeps the ``SlotSet`` and
``BotUttered`` events of this action (of a custom slot mapping's own action it
keeps only the slots). It runs the frustration check: when the customer is
frustrated it escalates on the spot (opens the case and says so), and the bot
then answers the message as usual. A check in the policies would need a rule
per intent inside every form.
"""
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction
from rasa_sdk.types import DomainDict

from actions.handoff import escalate
from actions.journeys import expire_offer
from actions.sentiment import assess, customer_texts


def check_frustration(dispatcher: CollectingDispatcher, tracker: Tracker) -> List[Dict[Text, Any]]:
    """Score the latest message; escalate if the customer is frustrated. Returns slot events."""
    latest = tracker.latest_message or {}
    text = (latest.get("text") or "").strip()
    if tracker.is_paused() or tracker.get_slot("handoff_case") or not text or text.startswith("/"):
        return []
    if (latest.get("intent") or {}).get("name") == "request_human":
        return []  # action_request_human escalates this very message
    result = assess(customer_texts(tracker))
    events: List[Dict[Text, Any]] = []
    level: Optional[float] = round(result.level, 2) or None
    if level != tracker.get_slot("handoff_sentiment"):
        events.append(SlotSet("handoff_sentiment", level))
    if result.frustrated:
        events += escalate(dispatcher, tracker, "frustration")
    return events


class ValidateSlotMappings(ValidationAction):
    """``action_validate_slot_mappings``: Rasa runs it after every customer message.

    The assistant's global slot validation. No slot outside a form needs one
    yet (``extract_<slot>`` / ``validate_<slot>`` methods would go here, with
    the slot added to ``required_slots``); it runs the frustration check.
    """

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        """The global slots validated here: none yet."""
        return []

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        events = await super().run(dispatcher, tracker, domain)
        return events + expire_offer(tracker) + check_frustration(dispatcher, tracker)
