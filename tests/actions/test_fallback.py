"""The two-stage fallback's "Did you want to ...?" offers tasks, never yes, no or hello."""
import pytest
import yaml
from pathlib import Path
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import ActionDefaultAskAffirmation
from actions.tasks import suggestions
from tests.actions.helpers import make_tracker, responses

DOMAIN = yaml.safe_load((Path(__file__).resolve().parents[2] / "domain.yml").read_text())
META = {"affirm", "deny", "greet", "say_goodbye", "say_thanks", "out_of_scope", "stop_task", "challenge_bot",
        "provide_info", "provide_link_code", "nlu_fallback"}


def ranked(*names):
    tracker = make_tracker(intent="nlu_fallback", text="hmm")
    tracker.latest_message["intent_ranking"] = [{"name": n, "confidence": 0.4 - i * 0.05} for i, n in enumerate(names)]
    return tracker


async def ask(tracker):
    dispatcher = CollectingDispatcher()
    await ActionDefaultAskAffirmation().run(dispatcher, tracker, {})
    return dispatcher.messages


async def test_yes_and_no_are_never_offered_did_you_want_to_yes_cannot_happen():
    messages = await ask(ranked("nlu_fallback", "affirm", "deny", "greet", "say_thanks"))
    assert responses_of(messages) == ["utter_ask_rephrase"]


async def test_the_likeliest_task_is_offered_in_plain_words():
    messages = await ask(ranked("nlu_fallback", "affirm", "check_order", "deny"))
    assert messages[0]["response"] == "utter_ask_affirmation"
    assert messages[0]["suggestion"] == "track an order"  # "Did you want to track an order?"
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/check_order", "/out_of_scope"]


@pytest.mark.parametrize("top", sorted(set(DOMAIN["intents"]) | {"nlu_fallback"}))
async def test_whatever_nlu_ranks_first_only_tasks_are_suggested(top):
    messages = await ask(ranked(top, *sorted(META)))
    offered = [b["payload"].lstrip("/") for m in messages for b in m.get("buttons", [])]
    assert not set(offered) & (META - {"out_of_scope"})
    if messages[0]["response"] == "utter_ask_affirmation":
        assert messages[0]["suggestion"] not in ("yes", "no", "Yes", "No")
        assert offered[0] in suggestions()


def test_the_suggestions_are_tasks_or_a_person_and_read_as_phrases():
    assert set(suggestions()).isdisjoint(META)
    text = next(r["text"] for r in DOMAIN["responses"]["utter_ask_affirmation"])
    assert "Did you want to {suggestion}?" in text


def responses_of(messages):
    return [m.get("response") for m in messages]
