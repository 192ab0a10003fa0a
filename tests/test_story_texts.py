"""The test stories are written from the customer's side: what they write is read as the story says.

``rasa test core`` takes each story's intents as given. This checks the other
half with the trained model: every ``user:`` text in tests/test_stories.yml
(button payloads aside) is classified as the intent its story names, so a
story cannot claim "actually make it 11am" is an answer while NLU reads it
as "stop".
"""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent
STORIES = yaml.safe_load((ROOT / "test_stories.yml").read_text())["stories"]


def _said():
    """(story, text, intent, the form active when it was said) for every customer text."""
    said = []
    for story in STORIES:
        loop = None
        for step in story["steps"]:
            if "active_loop" in step:
                loop = step["active_loop"]
            if "user" in step and not step["user"].startswith("/"):
                said.append((story["story"], step["user"], step["intent"], loop))
    return said


SAID = _said()


def alike_in(loop):
    """Intents a form takes alike: inside a form, "tomorrow at 10" is the answer whether NLU reads it
    as ``provide_info`` or as the form's own task (the form's mappings and readers do not tell them apart)."""
    from actions.tasks import task_for

    task = task_for(loop)
    return {"provide_info", *task.start_intents} if task else set()

pytestmark = pytest.mark.e2e


def test_there_are_customer_written_stories():
    assert len({name for name, _, _, _ in SAID}) >= 40


def test_every_customer_text_is_read_as_its_story_says(parse):
    wrong = []
    for story, text, intent, loop in SAID:
        read = parse(text)["intent"]["name"]
        alike = alike_in(loop)
        if read != intent and not (intent in alike and read in alike):
            wrong.append(f"{story!r}: {text!r} is read as {read}, the story says {intent}")
    assert not wrong, "\n".join(wrong)
