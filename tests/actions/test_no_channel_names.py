"""Fulfillment never branches on channel: nothing under actions/ names one."""
import re
from pathlib import Path

ACTIONS = Path(__file__).resolve().parents[2] / "actions"
FORBIDDEN = re.compile(
    r"whatsapp|telegram|twilio|jambonz|webchat|socketio|messenger|get_latest_input_channel|input_channel",
    re.IGNORECASE,
)


def test_no_action_module_mentions_a_channel():
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(ACTIONS.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert offenders == []


def test_the_check_would_catch_a_channel_branch():
    assert FORBIDDEN.search('if tracker.get_latest_input_channel() == "facebook":')
    assert FORBIDDEN.search("send it on WhatsApp")
