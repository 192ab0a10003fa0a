"""An answer means the same after masking: the NLU reads what ingestion leaves of a message.

The connector pipeline masks personal data before Rasa sees a message
(threadline/pii.py): emails and phone numbers become vault tokens, cards and
IBANs typed placeholders. The model is trained on both shapes
(data/nlu/masked.yml); this checks, with the trained model and Presidio's real
detection, that customers' answers carrying personal data are read as the
answers they are once masked, and that the email is still found as an entity
for the form that asked for it. None of these texts is a training example.
"""
import itertools

import pytest

from threadline import pii

pytestmark = pytest.mark.e2e

ANSWERS = [
    ("my email is rosa.quintana@example.org and my card is 4111 1111 1111 1111", "provide_info", "email"),
    ("rosa.quintana@example.org", "provide_info", "email"),
    ("sure, it's priya.n@example.co.uk", "provide_info", "email"),
    ("you can send the confirmation to olek.w@example.net", "provide_info", "email"),
    ("oops wrong email, it is dan.moss@example.com", "provide_info", "email"),
    ("email me at m.garcia@example.org please", "provide_info", "email"),
    ("my phone is +44 7700 900123 and email jo@example.com", "provide_info", "email"),
    ("call me on +1 415 555 0132", "provide_info", None),
]

_ids = itertools.count()


def masked(text: str) -> str:
    """``text`` as the connector pipeline hands it to Rasa (token ids made up: no vault needed)."""
    out = text
    for found in sorted(pii.find(text), key=lambda f: f.start, reverse=True):
        ident = f"{next(_ids):016d}".translate(str.maketrans("0123456789", "abcdefghij"))
        if found.entity_type == pii.EMAIL_ADDRESS:
            value = pii.email_token(ident)
        elif found.entity_type == pii.PHONE_NUMBER:
            value = pii.phone_token(ident)
        else:
            value = pii.placeholder(found.entity_type)
        out = out[:found.start] + value + out[found.end:]
    return out


def test_masking_leaves_no_value_and_the_token_shapes():
    seen = masked("my email is rosa.quintana@example.org and my card is 4111 1111 1111 1111")
    assert "rosa" not in seen and "4111" not in seen
    assert "@token.invalid" in seen and "<CREDIT_CARD>" in seen


@pytest.mark.parametrize("text,intent,entity", ANSWERS)
def test_a_masked_answer_is_read_as_the_answer_it_is(parse, text, intent, entity):
    seen = masked(text)
    assert seen != text
    reading = parse(seen)
    assert reading["intent"]["name"] == intent, (seen, reading["intent_ranking"][:3])
    if entity:
        values = [e["value"] for e in reading["entities"] if e["entity"] == entity]
        assert values and all(pii.is_token(v) for v in values), (seen, reading["entities"])
