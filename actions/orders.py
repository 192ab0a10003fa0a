"""Order status and delivery address, with step-up verification for personal data."""
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.continuity import ContinuityFormValidation

from actions.context import is_verified
from actions.formatting import say_date
from threadline.db import queries

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
STATUS_WORDS = {
    "processing": "being prepared",
    "shipped": "on its way",
    "out_for_delivery": "out for delivery",
    "delivered": "delivered",
    "cancelled": "cancelled",
}
MAX_VERIFICATION_ATTEMPTS = 3


def normalise_order_number(value: Any) -> Optional[str]:
    """6 digits from "482913", "482-913", "4 8 2 9 1 3" or "four eight two...", else None."""
    if value is None:
        return None
    words = re.findall(r"[a-z]+|\d+", str(value).lower())
    digits = "".join(_DIGIT_WORDS.get(w, w if w.isdigit() else "") for w in words)
    return digits if re.fullmatch(r"\d{6}", digits) else None


def normalise_postal_code(value: Any) -> str:
    """Postal codes compared without case, spaces or dashes."""
    return re.sub(r"[\s-]", "", str(value or "")).upper()


def describe_order(order: queries.OrderInfo) -> str:
    """The details sentence for an order's status."""
    if order.status == "delivered":
        when = f" on {say_date(order.expected_delivery)}" if order.expected_delivery else ""
        return f"It was delivered{when} by {order.carrier}."
    if order.status == "cancelled":
        return "It was cancelled, and any payment has been refunded."
    parts = []
    if order.carrier:
        parts.append(f"Carrier: {order.carrier}, tracking number {order.tracking_number}.")
    if order.expected_delivery:
        parts.append(f"Expected delivery: {say_date(order.expected_delivery)}.")
    return " ".join(parts)


class ValidateOrderStatusForm(ContinuityFormValidation):
    """Checks the order number's format and that the order exists."""

    def name(self) -> Text:
        return "validate_order_status_form"

    async def validate_order_number(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        number = normalise_order_number(slot_value)
        if number is None:
            dispatcher.utter_message(response="utter_invalid_order_number")
            return {"order_number": None}
        if queries.get_order(number) is None:
            dispatcher.utter_message(response="utter_unknown_order", order_number=number)
            return {"order_number": None}
        return {"order_number": number}


class ValidateOrderAddressForm(ValidateOrderStatusForm):
    """Asks for the order's postal code unless the customer is already verified."""

    def name(self) -> Text:
        return "validate_order_address_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        number = tracker.get_slot("order_number")
        if is_verified(tracker) or (number and tracker.get_slot("verification_order") == number):
            return ["order_number"]
        return domain_slots

    async def validate_verification_postal_code(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        order = queries.get_order(tracker.get_slot("order_number") or "")
        if order and normalise_postal_code(slot_value) == normalise_postal_code(order.postal_code):
            return {"verification_postal_code": "ok", "verification_order": order.number}
        failures = 1 + sum(
            1
            for event in tracker.events
            if event.get("event") == "bot"
            and (event.get("metadata") or {}).get("utter_action") == "utter_verification_failed"
        )
        dispatcher.utter_message(response="utter_verification_failed")
        if failures >= MAX_VERIFICATION_ATTEMPTS:
            # Stop asking: the form completes and the address stays hidden.
            return {"verification_postal_code": "locked", "verification_order": None}
        return {"verification_postal_code": None}


class ActionShowOrderStatus(Action):
    """Answers with the order's status, carrier and expected delivery."""

    def name(self) -> Text:
        return "action_show_order_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        order = queries.get_order(tracker.get_slot("order_number") or "")
        if order is None:
            dispatcher.utter_message(response="utter_ask_order_number")
            return []
        dispatcher.utter_message(
            response="utter_order_status",
            order_number=order.number,
            status=STATUS_WORDS.get(order.status, order.status),
            details=describe_order(order),
        )
        return [SlotSet("order_last_checked", order.number)]


class ActionShowOrderAddress(Action):
    """Reveals the delivery address only to a verified customer."""

    def name(self) -> Text:
        return "action_show_order_address"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        number = tracker.get_slot("order_number")
        order = queries.get_order(number or "")
        verified = is_verified(tracker) or (order and tracker.get_slot("verification_order") == order.number)
        if order is None or not verified:
            dispatcher.utter_message(response="utter_verification_locked")
        else:
            dispatcher.utter_message(
                response="utter_order_address", order_number=order.number, address=order.shipping_address
            )
        return [SlotSet("verification_postal_code", None)]
