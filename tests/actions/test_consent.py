"""The opt_out intent and the confirmed erasure, as the action server runs them."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.consent import ActionEraseMyData, ActionOptOut
from actions.personal_data import reveal, shown
from tests.actions.helpers import make_tracker
from threadline import consent, erasure, pii
from threadline.db import audit

pytestmark = pytest.mark.usefixtures("business_db")


@pytest.mark.asyncio
async def test_opt_out_revokes_the_channel_and_ends_the_task():
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(metadata={"channel": "whatsapp", "channel_user_id": "1555"}, intent="opt_out",
                           active_loop="appointment_form", sender_id="c_optout")
    events = await ActionOptOut().run(dispatcher, tracker, {})
    assert [m["response"] for m in dispatcher.messages] == ["utter_opted_out"]
    assert events[0]["event"] == "active_loop" and events[0]["name"] is None
    states = consent.states("c_optout")
    assert states[("whatsapp", "service")] == "revoked"


@pytest.mark.asyncio
async def test_erasure_is_asked_for_the_end_of_the_turn():
    dispatcher = CollectingDispatcher()
    await ActionEraseMyData().run(dispatcher, make_tracker(sender_id="c_forget_me"), {})
    assert erasure.pending("c_forget_me")["actor"] == "customer"
    assert [m["response"] for m in dispatcher.messages] == ["utter_erasure_done"]


def test_tokens_resolve_only_through_the_helper_and_are_audited():
    token = pii.mask("sam@example.org", "c_token").text
    tracker = make_tracker(sender_id="c_token")
    assert reveal(token, tracker, "booking_confirmation") == "sam@example.org"
    assert reveal("plain@example.org", tracker, "x") == "plain@example.org"
    assert shown(token, tracker) == "s…@example.org"
    assert audit.entries(customer_ref="c_token", action="vault_resolve")
