"""A push channel's replies wait for the stored turn; a stored turn's unsent replies are resent once.

A real connector on Rasa's ``configure_app``, a real Redis and Threadline's
tracker store; the agent stands in for Rasa's processor (it logs the message,
sends its replies through the message's output channel as each action runs,
and saves the turn at the end) and can die before or after the save.
"""
import json

import pytest
import requests
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

from connectors import dedupe, reply_outbox
from tests.connectors.harness import EchoAgent, serve_channel
from tests.connectors.test_base import AcmeInput
from threadline import identity
from threadline.keys import Keys
from threadline.tracker_store import RedisEventLogTrackerStore


class HeldAcme(AcmeInput):
    channel = "acme"
    holds_replies = True


class Died(Exception):
    """The replica died here (the pipeline sees an error; nothing after it runs)."""


class StoringAgent(EchoAgent):
    """Logs, replies as each action runs, saves the turn: Rasa's order. ``die`` is "before save" or "after save"."""

    def __init__(self, redis, die=None):
        super().__init__()
        self.tracker_store = RedisEventLogTrackerStore(Domain.empty(), redis=redis)
        self.die = die

    async def handle_message(self, message):
        self.messages.append(message)
        tracker = await self.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, input_channel=message.input_channel, message_id=message.message_id))
        for number in (1, 2):
            reply = {"text": f"Reply {number} to {message.text}"}
            tracker.update(BotUttered(reply["text"]))
            await message.output_channel.send_response(message.sender_id, dict(reply))
        tracker.update(ActionExecuted("action_listen"))
        if self.die:
            die, self.die = self.die, None
            if die == "before save":
                raise Died(die)
            await self.tracker_store.save(tracker)
            raise Died(die)
        await self.tracker_store.save(tracker)
        await reply_outbox.flush(message.output_channel)


def deliver(served, message_id, text="hi", sender="u-1"):
    body = json.dumps({"messages": [{"from": sender, "id": message_id, "text": text}]})
    return requests.post(served.url + "/webhook", data=body, headers={"X-Acme-Secret": "s3cret"}, timeout=30)


def sent_texts(recorder):
    return [r.json["text"] for r in recorder.requests if r.path.endswith("/send")]


@pytest.fixture
def channel(recorder, redis):
    return HeldAcme.from_credentials({"secret": "s3cret", "api_base": recorder.url})


@pytest.mark.services
def test_replies_wait_for_the_save_and_a_turn_that_died_before_it_sent_nothing(channel, recorder, redis):
    with serve_channel(channel, StoringAgent(redis, die="before save")) as served:
        assert deliver(served, "m-1").status_code == 503
        assert sent_texts(recorder) == []  # Rasa had "sent" two replies; none left the replica
        assert deliver(served, "m-1").status_code == 200
        recorder.wait_for(2)
        assert sent_texts(recorder) == ["Reply 1 to hi", "Reply 2 to hi"]
        assert redis.get(Keys().dedupe("acme", "m-1")) == b"sent"


@pytest.mark.services
def test_a_turn_stored_by_a_replica_that_died_before_sending_is_answered_once_on_the_retry(channel, recorder, redis):
    with serve_channel(channel, StoringAgent(redis, die="after save")) as served:
        assert deliver(served, "m-1").status_code == 503
        assert sent_texts(recorder) == []
        assert redis.get(Keys().dedupe("acme", "m-1")).startswith(b"done:")
        assert deliver(served, "m-1").status_code == 200  # resent from the stored turn, not run again
        recorder.wait_for(2)
        assert deliver(served, "m-1").status_code == 200  # a duplicate now
        assert sent_texts(recorder) == ["Reply 1 to hi", "Reply 2 to hi"]
        assert len(served.agent.messages) == 1
        customer = identity.channel_identity("acme", "u-1").customer_id
        events = served.agent.tracker_store.recent_events_sync(customer)
        assert [e["event"] for e in events].count("user") == 1


@pytest.mark.services
def test_a_resend_that_fails_is_resent_by_the_next_retry(channel, recorder, redis):
    with serve_channel(channel, StoringAgent(redis, die="after save")) as served:
        assert deliver(served, "m-1").status_code == 503
        real = served.agent.tracker_store.recent_events_sync
        served.agent.tracker_store.recent_events_sync = lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down"))
        assert deliver(served, "m-1").status_code == 503
        served.agent.tracker_store.recent_events_sync = real
        assert deliver(served, "m-1").status_code == 200
        recorder.wait_for(2)
        assert sent_texts(recorder) == ["Reply 1 to hi", "Reply 2 to hi"]


# ------------------------------------------------------------------ unit


def _user(message_id, text="hi"):
    return {"event": "user", "text": text, "message_id": message_id}


def _bot(text, **data):
    return {"event": "bot", "text": text, "data": data, "metadata": {}}


LISTEN = {"event": "action", "name": "action_listen"}


def test_replies_of_turn_are_the_bot_messages_up_to_the_turns_end():
    events = [
        _user("m-1", "first"), {"event": "action", "name": "utter_greet"}, _bot("Hello"), LISTEN,
        _user("m-2", "second"), _bot("One", buttons=[{"title": "Yes", "payload": "/affirm"}]),
        {"event": "slot", "name": "x", "value": 1}, _bot("Two"), LISTEN,
        _bot("A later message from an agent"),
    ]
    first = reply_outbox.replies_of_turn(events, "m-1")
    assert [r["text"] for r in first] == ["Hello"]
    second = reply_outbox.replies_of_turn(events, "m-2")
    assert [r["text"] for r in second] == ["One", "Two"]
    assert second[0]["buttons"] == [{"title": "Yes", "payload": "/affirm"}]
    assert reply_outbox.replies_of_turn(events, "m-3") is None
    assert reply_outbox.replies_of_turn([_user("m-4")], "m-4") == []


@pytest.mark.services
def test_the_claim_tells_a_held_channel_to_resend_once_and_others_it_is_a_duplicate(redis):
    keys = Keys()
    key, resend, limit = keys.dedupe("acme", "m-9"), keys.dedupe_resend("acme", "m-9"), keys.dedupe("acme", "sender-budget")
    redis.set(key, "done:c_42")

    def claim(lease, held=True):
        return dedupe.claim_within(redis, key, lease, limit, 60, 100, resend, held)

    assert claim("a", held=False).outcome == "duplicate"
    first = claim("a")
    assert (first.outcome, first.conversation_id) == ("unsent", "c_42")
    assert claim("b").outcome == "in_progress"  # one resender at a time
    dedupe.release(redis, resend, "a")
    assert claim("c").outcome == "unsent"
    dedupe.resent(redis, key, resend, 60)
    assert claim("d").outcome == "duplicate"
    assert redis.get(limit) is None  # none of these counted against the sender
