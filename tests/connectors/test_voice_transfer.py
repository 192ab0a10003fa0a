"""A handoff on a call becomes a live transfer: TwiML <Dial> and jambonz dial."""
import json

import pytest

from connectors.jambonz import JambonzInput
from connectors.twilio_voice import twiml
from connectors.voice.speech import build_prompt
from tests.connectors.test_voice_checks import assert_valid_jambonz, assert_valid_twiml

HANDOFF = [
    {"text": "I'm connecting you with a member of our team. Your case number is 12."},
    {"custom": {"handoff": {"case": 12, "transfer": True, "queue": "general"}}},
]


def test_handoff_payload_asks_for_a_transfer_and_is_not_spoken():
    prompt = build_prompt(HANDOFF)
    assert prompt.transfer
    assert "handoff" not in prompt.fragment and "case number is 12" in prompt.fragment


def test_no_transfer_when_nobody_is_available():
    messages = [HANDOFF[0], {"custom": {"handoff": {"case": 12, "transfer": False}}}]
    assert not build_prompt(messages).transfer


@pytest.mark.parametrize(
    "target,noun", [("+15550100999", "Number"), ("sip:desk@pbx.example.com", "Sip")]
)
def test_twiml_dials_a_number_or_a_sip_uri_after_speaking(target, noun):
    prompt = build_prompt(HANDOFF)
    prompt.transfer_to = target
    root = assert_valid_twiml(twiml(prompt, action_url="https://x/gather", say={"voice": "alice"}, gather={}))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root.find("Dial").find(noun).text == target


def test_jambonz_dials_after_speaking():
    channel = JambonzInput.__new__(JambonzInput)
    channel.config = {"voice": "", "language": "en-US", "input_timeout": "5"}
    prompt = build_prompt(HANDOFF)
    prompt.transfer_to = "sip:desk@pbx.example.com"
    verbs = json.loads(channel.render(None, prompt, "https://x/gather"))
    assert_valid_jambonz(verbs)
    assert [v["verb"] for v in verbs] == ["say", "dial"]
    assert verbs[1]["target"] == [{"type": "sip", "sipUri": "sip:desk@pbx.example.com"}]
