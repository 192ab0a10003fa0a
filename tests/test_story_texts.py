"""The test stories are written from the customer's side: what they write is read as the story says.

``rasa test core`` takes each story's intents as given. This checks the other
half with the trained model: every ``user:`` text in tests/test_stories.yml
(button payloads aside) is classified as the intent its story names, so a
story cannot claim "actually make it 11am" is an answer while NLU reads it
as "stop".
"""
import asyncio
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent
MODEL = ROOT.parent / "models" / "threadline.tar.gz"
STORIES = yaml.safe_load((ROOT / "test_stories.yml").read_text())["stories"]
SAID = [
    (story["story"], step["user"], step["intent"])
    for story in STORIES
    for step in story["steps"]
    if "user" in step and not step["user"].startswith("/")
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def parse():
    if not MODEL.exists():
        pytest.skip("no trained model (make train)")
    from rasa.core.agent import Agent

    agent = Agent.load(str(MODEL))
    loop = asyncio.new_event_loop()
    yield lambda text: loop.run_until_complete(agent.parse_message(text))
    loop.close()


def test_there_are_customer_written_stories():
    assert len({name for name, _, _ in SAID}) >= 40


def test_every_customer_text_is_read_as_its_story_says(parse):
    wrong = []
    for story, text, intent in SAID:
        read = parse(text)["intent"]["name"]
        if read != intent:
            wrong.append(f"{story!r}: {text!r} is read as {read}, the story says {intent}")
    assert not wrong, "\n".join(wrong)
