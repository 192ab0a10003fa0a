"""Consent, masking and erasure through the real stack (rasa server, action server, model)."""
import datetime as dt
import json

import pytest

from tests.support.web import Chat
from threadline import consent, erasure
from threadline.db import audit, consent as ledger, queries
from threadline.keys import Keys
from threadline.redis_client import get_client

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def conversation_text(customer_id):
    return b"\n".join(get_client().lrange(Keys().tracker("ev", customer_id), 0, -1)).decode()


def test_an_email_is_a_token_everywhere_but_the_booking(stack):
    chat = Chat(stack)
    day = dt.date.today() + dt.timedelta(days=12)
    while day.weekday() == 6:
        day += dt.timedelta(days=1)
    chat.say_text(f"I'd like to book a repair on {day:%B} {day.day} at 11am")
    confirm = chat.say("my email is rosa.quintana@example.org and my card is 4111 1111 1111 1111")
    assert "Shall I book" in confirm[0]["text"]
    done = chat.say_text("yes")
    assert "booked" in done and "r…@example.org" in done and "rosa.quintana" not in done
    (booked,) = queries.upcoming_appointments(chat.customer_id)
    assert booked.contact_email == "rosa.quintana@example.org"  # the action server resolved the token
    stored = conversation_text(chat.customer_id)
    assert "rosa.quintana" not in stored and "4111" not in stored
    assert "@token.invalid" in stored and "<CREDIT_CARD>" in stored
    assert audit.entries(customer_ref=chat.customer_id, action="vault_resolve")


def test_opt_out_in_words_and_its_near_misses(stack):
    chat = Chat(stack)
    chat.say("hi")
    chat.say("cancel my appointment")
    chat.say("stop my cancellation")
    assert consent.states(chat.customer_id) == {}
    answer = chat.say_text("please stop texting me")
    assert "unsubscribed" in answer
    assert consent.states(chat.customer_id)[("webchat", "service")] == "revoked"
    assert ledger.history(chat.customer_id)[0]["source"] == "intent"


def test_delete_my_data_asks_first_then_erases_the_conversation(stack):
    chat = Chat(stack)
    chat.say("hi, my email is olek.w@example.net")
    customer = chat.customer_id
    ask = chat.say("delete my data")
    assert [b["payload"] for b in ask[0]["buttons"]] == ["/affirm", "/deny"]
    assert "haven't deleted" in chat.say_text("no")
    assert get_client().exists(Keys().tracker("ev", customer))
    chat.say("delete my data")
    assert "deleted" in chat.say_text("/affirm")
    assert not get_client().exists(Keys().tracker("ev", customer))
    assert erasure.is_erased("customer", customer)
    assert audit.entries(customer_ref=erasure.pseudonym(customer), action="erasure")
    assert json.dumps(erasure.export(customer, actor="test"))  # nothing left to export but empty lists
