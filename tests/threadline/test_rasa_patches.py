"""The compiled validator accepts and rejects exactly what Rasa's own check does."""
import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction

from threadline import rasa_patches

GOOD = {"events": [{"event": "slot", "name": "order_number", "value": "482913"}],
        "responses": [{"text": "hi", "buttons": []}]}
BAD = [{"events": "not a list"}, {"events": [{"no_event_key": 1}]}, {"events": [{"event": 5}]}, {"responses": "x"}]


def stock_check(result):
    jsonschema.validate(result, RemoteAction.action_response_format_spec())


def test_same_verdicts_as_rasa_and_the_schema_is_checked_once(monkeypatch):
    rasa_patches.install()
    rasa_patches.install()  # idempotent
    action = RemoteAction("action_x", None)
    assert action._validate_action_result(GOOD)
    stock_check(GOOD)
    for bad in BAD:
        with pytest.raises(jsonschema.ValidationError):
            stock_check(bad)
    checks = []
    cls = jsonschema.validators.validator_for(RemoteAction.action_response_format_spec())
    monkeypatch.setattr(cls, "check_schema", classmethod(lambda c, s: checks.append(s)))
    for bad in BAD:
        with pytest.raises(jsonschema.ValidationError) as ours:
            action._validate_action_result(dict(bad))
        assert "Failed to validate Action server response" in ours.value.message
    assert action._validate_action_result(GOOD)
    assert checks == []
