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
        {"requested_slot": "order_number"}, active_loop="order_status_form", extracted={"order_number": "482913"},
        events=EARLIER_ON_OTHER_CHANNEL,
        metadata={"channel": "chan_b", "previous_channel": "chan_a", "message_id": "m3"},
    )
    dispatcher = CollectingDispatcher()
    await ValidateOrderStatusForm().run(dispatcher, tracker, {"forms": {"order_status_form": {"required_slots": ["order_number"]}}, "slots": {}})
    assert dispatcher.messages[0]["response"] == "utter_continue_task"
    tracker.slots["continuity_acknowledged"] = "m3"
    assert switch_acknowledgement(tracker) is None


@pytest.mark.services
@pytest.mark.usefixtures("business_db")
async def test_a_form_turn_that_fills_nothing_sets_nothing_so_rasa_can_reject_the_form():
    # Rasa only lets a digression rule run when the form's validation sets no slot.
    tracker = make_tracker(
        {"requested_slot": "order_number"}, intent="link_channel", active_loop="order_status_form",
        events=EARLIER_ON_OTHER_CHANNEL,
        metadata={"channel": "chan_b", "previous_channel": "chan_a", "message_id": "m4"},
    )
    dispatcher = CollectingDispatcher()
    events = await ValidateOrderStatusForm().run(dispatcher, tracker, {"forms": {"order_status_form": {"required_slots": ["order_number"]}}, "slots": {}})
    assert events == [] and dispatcher.messages == []


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


# ------------------------------------------------------- the last task, finished or not


def _finished_order_check(at, channel_label="Chat A", **metadata):
    slots = {"order_number": "482913", "continuity_task": "order_status_form",
             "continuity_task_channel": channel_label, "continuity_task_at": at}
    return make_tracker(slots, intent="greet", metadata={"channel": "chan_b", "channel_label": "Chat B",
                                                         "message_id": "g1", **metadata})


async def test_a_greeting_names_the_last_task_finished_on_another_channel():
    import time

    dispatcher = CollectingDispatcher()
    await ActionGreetCustomer().run(dispatcher, _finished_order_check(time.time() - 600), {})
    (message,) = dispatcher.messages
    assert message["response"] == "utter_greet_recent"
    assert (message["task"], message["where"]) == ("checking order 482913", " on Chat A")


async def test_the_channel_is_named_only_when_the_context_came_from_there():
    import time

    dispatcher = CollectingDispatcher()
    await ActionGreetCustomer().run(dispatcher, _finished_order_check(time.time() - 60, channel_label="Chat B"), {})
    assert dispatcher.messages[0]["where"] == ""


async def test_a_caller_id_hears_the_task_without_personal_data_and_steps_up_first():
    import time

    dispatcher = CollectingDispatcher()
    tracker = _finished_order_check(time.time() - 600, trust="low", origin="caller_id")
    events = await ActionGreetCustomer().run(dispatcher, tracker, {})
    (message,) = dispatcher.messages
    assert message["response"] == "utter_greet_recent_private"
    assert message["task"] == "checking one of your orders" and "482913" not in str(message)
    assert [e["name"] for e in events if e["event"] == "followup"] == ["order_status_form"]  # step-up next


async def test_an_old_task_is_not_brought_up():
    import time

    dispatcher = CollectingDispatcher()
    await ActionGreetCustomer().run(dispatcher, _finished_order_check(time.time() - 3 * 86400), {})
    assert responses(dispatcher) == ["utter_greet"]


def test_the_task_is_described_from_what_was_known_before_this_message():
    from actions.continuity import describe_task

    given_now = make_tracker({"order_number": "482913"}, active_loop="order_status_form",
                             events=[{"event": "user", "text": "where is it"}])
    given_now.events.append({"event": "slot", "name": "order_number", "value": "482913"})
    assert describe_task(given_now, "order_status_form") == "checking an order"
    booking = make_tracker({"appointment_service": "installation", "appointment_time": "2030-01-03T16:00"})
    assert describe_task(booking, "appointment_form") == \
        "booking an installation appointment for Thursday 3 January at 16:00"
    assert describe_task(booking, "appointment_form", private=False) == "booking an installation appointment"
