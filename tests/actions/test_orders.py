"""Order status and the step-up check before personal data, on a real database."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.orders import (
    ActionShowOrderAddress,
    ActionShowOrderStatus,
    ValidateOrderAddressForm,
    ValidateOrderStatusForm,
    normalise_order_number,
)
from tests.actions.helpers import make_tracker, responses, slot_events

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("business_db")]
DOMAIN = {"forms": {"order_status_form": {"required_slots": ["order_number"]}}}


@pytest.mark.parametrize(
    "spoken,expected",
    [
        ("482913", "482913"),
        ("482-913", "482913"),
        ("4 8 2 9 1 3", "482913"),
        ("four eight two nine one three", "482913"),
        ("order 48291", None),
        ("'; DROP TABLE orders; --", None),
        ("", None),
    ],
)
def test_order_numbers_are_read_from_typed_keyed_and_spoken_forms(spoken, expected):
    assert normalise_order_number(spoken) == expected


async def test_known_order_is_accepted():
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderStatusForm().validate_order_number(
        "4 8 2 9 1 3", dispatcher, make_tracker(), DOMAIN
    )
    assert result == {"order_number": "482913"}
    assert dispatcher.messages == []


async def test_unknown_order_is_refused_with_a_helpful_message():
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderStatusForm().validate_order_number("999999", dispatcher, make_tracker(), DOMAIN)
    assert result == {"order_number": None}
    assert responses(dispatcher) == ["utter_unknown_order"]
    assert dispatcher.messages[0]["order_number"] == "999999"


async def test_badly_formatted_order_number_is_refused():
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderStatusForm().validate_order_number("12", dispatcher, make_tracker(), DOMAIN)
    assert result == {"order_number": None}
    assert responses(dispatcher) == ["utter_invalid_order_number"]


async def test_status_answer_comes_from_the_database():
    dispatcher = CollectingDispatcher()
    events = await ActionShowOrderStatus().run(dispatcher, make_tracker({"order_number": "482913"}), {})
    message = dispatcher.messages[0]
    assert message["response"] == "utter_order_status"
    assert message["status"] == "on its way"
    assert "UPS" in message["details"] and "Expected delivery" in message["details"]
    assert slot_events(events) == {"order_last_checked": "482913"}


async def test_low_trust_customer_must_give_the_postal_code():
    tracker = make_tracker({"order_number": "482913"}, metadata={"trust": "low"})
    slots = await ValidateOrderAddressForm().required_slots(
        ["order_number", "verification_postal_code"], CollectingDispatcher(), tracker, {}
    )
    assert slots == ["order_number", "verification_postal_code"]


async def test_verified_customer_skips_step_up():
    tracker = make_tracker({"order_number": "482913"}, metadata={"trust": "verified"})
    slots = await ValidateOrderAddressForm().required_slots(
        ["order_number", "verification_postal_code"], CollectingDispatcher(), tracker, {}
    )
    assert slots == ["order_number"]


async def test_right_postal_code_unlocks_the_address():
    tracker = make_tracker({"order_number": "482913"}, metadata={"trust": "low"})
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderAddressForm().validate_verification_postal_code(
        "94 105", dispatcher, tracker, {}
    )
    assert result == {"verification_postal_code": "ok", "verification_order": "482913"}
    tracker = make_tracker({"order_number": "482913", "verification_order": "482913"}, metadata={"trust": "low"})
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, tracker, {})
    assert dispatcher.messages[0]["address"] == "221 Mission Street, San Francisco, CA"


async def test_spoofed_caller_id_cannot_read_the_address():
    # A caller id alone gives low trust: without the postal code, no address.
    tracker = make_tracker({"order_number": "482913"}, metadata={"trust": "low", "channel": "voice"})
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, tracker, {})
    assert responses(dispatcher) == ["utter_verification_locked"]
    assert "Mission" not in str(dispatcher.messages)


async def test_three_wrong_postal_codes_lock_the_check():
    failed = {"event": "bot", "text": "x", "metadata": {"utter_action": "utter_verification_failed"}}
    tracker = make_tracker({"order_number": "482913"}, events=[failed, failed])
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderAddressForm().validate_verification_postal_code("00000", dispatcher, tracker, {})
    assert result == {"verification_postal_code": "locked", "verification_order": None}
