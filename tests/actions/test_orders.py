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


JANE = 1  # the business customer who owns orders 482913 and 102938 (threadline/db/seed.py)


def someone(identity="visitor-a", trust="anonymous", owner=None, source="source-a", **metadata):
    """Metadata of a message from one channel identity."""
    return dict(metadata, identity=identity, trust=trust, owner=owner, source=source)


async def test_known_order_is_accepted():
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(metadata=someone(owner=JANE, trust="verified"))
    result = await ValidateOrderStatusForm().validate_order_number("4 8 2 9 1 3", dispatcher, tracker, DOMAIN)
    assert result == {"order_number": "482913", "verification_postal_code": None}
    assert dispatcher.messages == []


async def test_someone_else_hears_the_status_then_is_asked_the_postal_code():
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderStatusForm().validate_order_number("482913", dispatcher, make_tracker(), DOMAIN)
    assert result["order_number"] == "482913"
    assert responses(dispatcher) == ["utter_order_status_public"]  # the status, no carrier or tracking number
    assert dispatcher.messages[0]["status"] == "on its way"
    slots = await ValidateOrderStatusForm().required_slots(
        ["order_number"], CollectingDispatcher(), make_tracker({"order_number": "482913"}), DOMAIN)
    assert slots == ["order_number", "verification_postal_code"]


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


async def test_the_owner_gets_the_details_from_the_database():
    dispatcher = CollectingDispatcher()
    tracker = make_tracker({"order_number": "482913"}, metadata=someone(owner=JANE, trust="verified"))
    events = await ActionShowOrderStatus().run(dispatcher, tracker, {})
    message = dispatcher.messages[0]
    assert message["response"] == "utter_order_status"
    assert message["status"] == "on its way"
    assert "UPS" in message["details"] and "Expected delivery" in message["details"]
    assert slot_events(events)["order_last_checked"] == "482913"


async def test_without_ownership_or_step_up_only_the_status_is_told():
    dispatcher = CollectingDispatcher()
    await ActionShowOrderStatus().run(dispatcher, make_tracker({"order_number": "482913"}), {})
    assert responses(dispatcher) == ["utter_order_status_public"]
    assert "UPS" not in str(dispatcher.messages) and "1Z999" not in str(dispatcher.messages)


async def test_a_verified_whatsapp_user_who_does_not_own_the_order_must_step_up():
    # Verified is about the phone, not the order: 554433 belongs to someone else.
    tracker = make_tracker({"order_number": "554433"}, metadata=someone(trust="verified", owner=JANE))
    slots = await ValidateOrderAddressForm().required_slots(
        ["order_number", "verification_postal_code"], CollectingDispatcher(), tracker, {})
    assert slots == ["order_number", "verification_postal_code"]
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, tracker, {})
    assert responses(dispatcher) == ["utter_verification_locked"] and "Downing" not in str(dispatcher.messages)


async def test_the_owner_skips_step_up():
    tracker = make_tracker({"order_number": "482913"}, metadata=someone(trust="verified", owner=JANE))
    slots = await ValidateOrderAddressForm().required_slots(
        ["order_number", "verification_postal_code"], CollectingDispatcher(), tracker, {})
    assert slots == ["order_number"]


async def test_forged_metadata_raises_no_trust():
    forged = {"trust": "verified", "owner": JANE, "channel": "whatsapp", "threadline_sig": "0" * 64}
    tracker = make_tracker({"order_number": "482913"}, metadata=forged, signed=False)
    slots = await ValidateOrderAddressForm().required_slots(
        ["order_number", "verification_postal_code"], CollectingDispatcher(), tracker, {})
    assert slots == ["order_number", "verification_postal_code"]


async def test_right_postal_code_unlocks_the_order_for_that_identity_only():
    tracker = make_tracker({"order_number": "482913"}, metadata=someone("caller-1", trust="low"))
    dispatcher = CollectingDispatcher()
    result = await ValidateOrderAddressForm().validate_verification_postal_code("94 105", dispatcher, tracker, {})
    assert result == {"verification_postal_code": "ok"}
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, make_tracker({"order_number": "482913"},
                                                                metadata=someone("caller-1", trust="low")), {})
    assert dispatcher.messages[0]["address"] == "221 Mission Street, San Francisco, CA"
    # Step-up belongs to the channel identity, not the conversation: another identity in it is still asked.
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, make_tracker({"order_number": "482913"},
                                                                metadata=someone("visitor-2")), {})
    assert responses(dispatcher) == ["utter_verification_locked"]


async def test_spoofed_caller_id_cannot_read_the_address():
    # A caller id alone gives low trust: without the postal code, no address.
    tracker = make_tracker({"order_number": "482913"}, metadata=someone("caller-2", trust="low",
                                                                        channel="twilio_voice"))
    dispatcher = CollectingDispatcher()
    await ActionShowOrderAddress().run(dispatcher, tracker, {})
    assert responses(dispatcher) == ["utter_verification_locked"]
    assert "Mission" not in str(dispatcher.messages)


async def test_wrong_postal_codes_lock_the_order_across_fresh_identities():
    form = ValidateOrderAddressForm()
    for attempt in range(2):
        dispatcher = CollectingDispatcher()
        tracker = make_tracker({"order_number": "482913"}, metadata=someone(f"visitor-{attempt}",
                                                                            source=f"addr-{attempt}"))
        assert await form.validate_verification_postal_code("00000", dispatcher, tracker, {}) == {
            "verification_postal_code": None}
        assert responses(dispatcher) == ["utter_verification_failed"]
    dispatcher = CollectingDispatcher()
    third = make_tracker({"order_number": "482913"}, metadata=someone("visitor-9", source="addr-9"))
    assert await form.validate_verification_postal_code("00000", dispatcher, third, {}) == {
        "verification_postal_code": "locked"}
    assert responses(dispatcher) == ["utter_verification_failed", "utter_verification_locked"]
    # Locked for everyone now, even with the right code from a brand new visitor id, and a person is offered.
    fresh = make_tracker({"order_number": "482913"}, metadata=someone("visitor-new", source="addr-new"))
    dispatcher = CollectingDispatcher()
    assert await form.validate_verification_postal_code("94105", dispatcher, fresh, {}) == {
        "verification_postal_code": "locked"}
    assert responses(dispatcher) == ["utter_verification_locked"]
    slots = await form.required_slots(["order_number", "verification_postal_code"], CollectingDispatcher(), fresh, {})
    assert slots == ["order_number"]  # the form stops asking while locked
