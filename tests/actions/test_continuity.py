"""Welcome back with context after a channel switch, and link codes."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.continuity import ActionConfirmLink, ActionGreetCustomer, ActionIssueLinkCode, switch_acknowledgement
from actions.orders import ValidateOrderStatusForm
from tests.actions.helpers import signed_metadata, make_tracker, responses, slot_events

EARLIER_ON_OTHER_CHANNEL = [
    {"event": "user", "text": "where is my order",
     "metadata": signed_metadata({"channel": "chan_a", "channel_label": "Chat A"})},
]


def test_no_acknowledgement_on_the_same_channel():
    tracker = make_tracker(
        {"order_number": "482913"}, active_loop="order_status_form",
        metadata={"channel": "chan_a", "previous_channel": "chan_a", "message_id": "m1"},
    )
    assert switch_acknowledgement(tracker) is None


async def test_greeting_on_a_new_channel_recalls_the_open_task_and_where():
    tracker = make_tracker(
        {"order_number": "482913"}, intent="greet", active_loop="order_status_form",
        events=EARLIER_ON_OTHER_CHANNEL,
        metadata={"channel": "chan_b", "previous_channel": "chan_a", "message_id": "m2"},
    )
    dispatcher = CollectingDispatcher()
    events = await ActionGreetCustomer().run(dispatcher, tracker, {})
    assert dispatcher.messages[0]["response"] == "utter_greet_returning"
    assert dispatcher.messages[0]["task"] == "checking order 482913"
    assert dispatcher.messages[0]["where"] == " on Chat A"
    assert slot_events(events) == {"continuity_acknowledged": "m2"}


async def test_new_customer_gets_the_plain_greeting():
    dispatcher = CollectingDispatcher()
    await ActionGreetCustomer().run(dispatcher, make_tracker(intent="greet"), {})
    assert responses(dispatcher) == ["utter_greet"]


@pytest.mark.services
@pytest.mark.usefixtures("business_db")
async def test_form_answer_on_a_new_channel_is_acknowledged_once():
    tracker = make_tracker(
        {"order_number": "482913", "requested_slot": "order_number"}, active_loop="order_status_form",
        events=EARLIER_ON_OTHER_CHANNEL,
        metadata={"channel": "chan_b", "previous_channel": "chan_a", "message_id": "m3"},
    )
    dispatcher = CollectingDispatcher()
    await ValidateOrderStatusForm().run(dispatcher, tracker, {"forms": {"order_status_form": {"required_slots": ["order_number"]}}, "slots": {}})
    assert dispatcher.messages[0]["response"] == "utter_continue_task"
    tracker.slots["continuity_acknowledged"] = "m3"
    assert switch_acknowledgement(tracker) is None


@pytest.mark.services
async def test_link_code_is_issued_for_this_customer():
    from threadline import linking

    dispatcher = CollectingDispatcher()
    await ActionIssueLinkCode().run(dispatcher, make_tracker(sender_id="c_linker"), {})
    code = dispatcher.messages[0]["code"]
    assert len(code) == 6 and code.isdigit()
    result = linking.redeem_link_code(code, "chan_c", "user-77")
    assert result.ok and result.customer_id == "c_linker"


@pytest.mark.parametrize(
    "result,expected",
    [({"ok": True}, "utter_link_ok"), ({"ok": False, "reason": "rate_limited"}, "utter_link_rate_limited"),
     ({"ok": False, "reason": "pending_confirmation", "pending": True, "confirm_label": "WhatsApp"},
      "utter_link_pending"),
     ({"ok": False, "reason": "invalid_or_expired"}, "utter_link_failed"), (None, "utter_link_failed")],
)
async def test_link_result_from_the_connector_is_explained(result, expected):
    dispatcher = CollectingDispatcher()
    await ActionConfirmLink().run(dispatcher, make_tracker(metadata={"link_result": result} if result else {}), {})
    assert responses(dispatcher)[0] == expected
