"""Order status and delivery address, with step-up verification for personal data.

The status ("on its way") is told to anyone with the order number; carrier,
tracking number, delivery date and address only to the order's owner or after
the order's postal code (``actions.verification``). Both forms ask for the
postal code themselves when it is needed, telling the status first.
"""
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import verification
from actions.context import entity_value, latest_text, turn
from actions.continuity import known_before_latest
from actions.formatting import say_date
from actions.forms import TaskFormValidation, asked
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


def postal_code_candidates(text: str, order_number: Optional[str] = None) -> List[str]:
    """What in a reply could be the postal code: "it's 94105, not 94107" -> ["94105"].

    Words with a digit (3 to 10 characters), a UK code in two parts ("SW1A 1AA"),
    or digits said one by one ("nine four one oh five"); never the order number,
    nor a value the customer says it is not.
    """
    words = re.findall(r"[A-Za-z0-9]+", str(text or ""))
    words = [_DIGIT_WORDS.get(w.lower(), w) if w.lower() in _DIGIT_WORDS else w for w in words]
    whole = normalise_postal_code(" ".join(words))
    if words and re.fullmatch(r"[A-Z0-9]{3,10}", whole) and re.search(r"\d", whole) and len(words) <= 3:
        return [whole] if whole != (order_number or "") else []  # "94 105", "SW1A 1AA"
    merged: List[str] = []
    for word in words:  # digits said one by one, or in small groups, become one number
        if word.isdigit() and len(word) <= 3 and merged and merged[-1].isdigit() and len(merged[-1] + word) <= 10 \
                and len(merged[-1]) <= 9:
            merged[-1] += word
        else:
            merged.append(word)
    found: List[str] = []
    negated = False
    index = 0
    while index < len(merged):
        word = merged[index]
        if word.lower() in ("not", "isnt", "wasnt"):
            negated = True
            index += 1
            continue
        following = merged[index + 1] if index + 1 < len(merged) else ""
        if re.fullmatch(r"[A-Za-z]{1,2}\d[A-Za-z\d]?", word) and re.fullmatch(r"\d[A-Za-z]{2}", following):
            candidate, index = word + following, index + 2
        else:
            candidate, index = word, index + 1
            if not (re.search(r"\d", candidate) and 3 <= len(candidate) <= 10):
                continue
        if negated:
            negated = False
        elif normalise_postal_code(candidate) != (order_number or ""):
            found.append(normalise_postal_code(candidate))
    return list(dict.fromkeys(found))


def has_details(order: queries.OrderInfo) -> bool:
    """Whether the order has anything personal to tell beyond its status."""
    return bool(order.carrier or order.tracking_number or order.expected_delivery)


def describe_order(order: queries.OrderInfo) -> str:
    """The details sentence for an order's status (personal: owner or step-up only)."""
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


def _status_only(dispatcher: CollectingDispatcher, order: queries.OrderInfo) -> None:
    dispatcher.utter_message(
        response="utter_order_status_public", order_number=order.number,
        status=STATUS_WORDS.get(order.status, order.status),
    )


class ValidateOrderStatusForm(TaskFormValidation):
    """Checks the order number; asks the postal code before details a non-owner may not see.

    A new order number at any point switches to that order ("wrong number,
    it's 554433"); a number that is no order while the postal code is asked
    (often the postal code itself, misread) keeps the order we have.
    """

    announces_status = True

    def name(self) -> Text:
        return "validate_order_status_form"

    def needs_step_up(self, tracker: Tracker, order: Optional[queries.OrderInfo]) -> bool:
        """Whether the postal code must be asked before the form can finish."""
        if order is None or order.status == "cancelled" or not has_details(order):
            return False
        return not verification.may_see_order_details(tracker, order) and \
            not verification.order_step_up_locked(tracker, order)

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        order = queries.get_order(tracker.get_slot("order_number") or "")
        slots = [slot for slot in domain_slots if slot != "verification_postal_code"]
        if self.needs_step_up(tracker, order) and tracker.get_slot("verification_postal_code") != "locked":
            slots.append("verification_postal_code")
        return slots

    async def validate_order_number(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        number = normalise_order_number(slot_value)
        known = known_before_latest(tracker, "order_number")
        keep_known = asked(tracker) not in ("order_number", None) and queries.get_order(known or "") is not None
        if number is None:
            if keep_known:
                return {"order_number": known}
            dispatcher.utter_message(response="utter_invalid_order_number")
            return {"order_number": None}
        if number == known and keep_known:
            return {"order_number": known}
        order = queries.get_order(number)
        if order is None:
            if keep_known:
                return {"order_number": known}
            dispatcher.utter_message(response="utter_unknown_order", order_number=number)
            return {"order_number": None}
        given_now = known != number
        if self.announces_status and self.needs_step_up(tracker, order) and (
                given_now or turn(tracker).may_see_conversation_data):
            # The status now, the details after the postal code; but a number this
            # sender did not give (a caller id joining someone's conversation) is not read out.
            _status_only(dispatcher, order)
        return {"order_number": number, "verification_postal_code": None}

    def reask_slots(self):
        return {"order_number", "verification_postal_code"}

    def reask(self, slot, dispatcher, tracker):
        dispatcher.utter_message(
            response="utter_invalid_order_number" if slot == "order_number" else "utter_reask_postal_code")
        return None

    async def validate_verification_postal_code(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        order = queries.get_order(tracker.get_slot("order_number") or "")
        if order is None:
            return {"verification_postal_code": None}
        if verification.order_step_up_locked(tracker, order):
            dispatcher.utter_message(response="utter_verification_locked")
            return {"verification_postal_code": "locked"}
        given = entity_value(tracker, "postal_code")
        text = latest_text(tracker) if str(slot_value) == latest_text(tracker) else str(slot_value)
        candidates = [normalise_postal_code(given)] if given and given in text else \
            postal_code_candidates(text, order.number)
        if len(candidates) != 1:
            # nothing that looks like a postal code, or several: ask again, counting nothing
            dispatcher.utter_message(response="utter_reask_postal_code")
            return {"verification_postal_code": None}
        if candidates[0] == normalise_postal_code(order.postal_code):
            verification.pass_order_step_up(tracker, order)
            return {"verification_postal_code": "ok"}
        result = verification.fail_step_up(tracker, verification.order_record(order.number))
        dispatcher.utter_message(response="utter_verification_failed")
        if result.locked:
            # Stop asking: the form completes, the details stay hidden, a person is offered.
            dispatcher.utter_message(response="utter_verification_locked")
            return {"verification_postal_code": "locked"}
        return {"verification_postal_code": None}


class ValidateOrderAddressForm(ValidateOrderStatusForm):
    """The same checks for the delivery address (which is always personal)."""

    announces_status = False

    def name(self) -> Text:
        return "validate_order_address_form"

    def needs_step_up(self, tracker: Tracker, order: Optional[queries.OrderInfo]) -> bool:
        if order is None:
            return False
        return not verification.may_see_order_details(tracker, order) and \
            not verification.order_step_up_locked(tracker, order)


class ActionShowOrderStatus(Action):
    """Answers with the order's status, and its details when the sender may see them."""

    def name(self) -> Text:
        return "action_show_order_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        order = queries.get_order(tracker.get_slot("order_number") or "")
        if order is None:
            dispatcher.utter_message(response="utter_ask_order_number")
            return []
        events = [SlotSet("order_last_checked", order.number), SlotSet("verification_postal_code", None)]
        if verification.may_see_order_details(tracker, order) or order.status == "cancelled" \
                or not has_details(order):
            dispatcher.utter_message(
                response="utter_order_status", order_number=order.number,
                status=STATUS_WORDS.get(order.status, order.status), details=describe_order(order),
            )
        elif tracker.get_slot("verification_postal_code") == "locked" or verification.order_step_up_locked(
                tracker, order):
            pass  # the form already said the details stay hidden
        else:
            _status_only(dispatcher, order)
        return events


class ActionShowOrderAddress(Action):
    """Reveals the delivery address only to the order's owner or after step-up."""

    def name(self) -> Text:
        return "action_show_order_address"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        order = queries.get_order(tracker.get_slot("order_number") or "")
        if order is not None and verification.may_see_order_details(tracker, order):
            dispatcher.utter_message(
                response="utter_order_address", order_number=order.number, address=order.shipping_address
            )
        elif tracker.get_slot("verification_postal_code") != "locked":
            dispatcher.utter_message(response="utter_verification_locked")
        return [SlotSet("verification_postal_code", None), SlotSet("order_last_checked", order.number if order else None)]
