"""One measured fix to Rasa 3.6's hot path, installed when the rasa server starts.

``RemoteAction._validate_action_result`` checks every action-server response
with ``jsonschema.validate``, which first re-validates the response *schema*
against its meta-schema (draft 2020-12, with dynamic references) on every
call. Profiling a turn with py-spy put that at 47% of the rasa server's CPU.
The fix validates the same responses against the same schema with a validator
built once, and raises the same error with the same message; Rasa's own
behaviour is otherwise untouched.
"""
import functools
from typing import Any, Dict

_INSTALLED = "_threadline_compiled_validator"


@functools.lru_cache(maxsize=1)
def _response_validator() -> Any:
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)  # once, instead of on every response
    return cls(schema)


def install() -> None:
    """Replace the per-call schema check with a compiled validator (idempotent)."""
    from jsonschema import ValidationError
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    if getattr(RemoteAction._validate_action_result, _INSTALLED, False):
        return

    def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
        try:
            _response_validator().validate(result)
            return True
        except ValidationError as error:
            error.message += (
                ". Failed to validate Action server response from API, "
                "make sure your response from the Action endpoint is valid. "
                f"For more information about the format visit {DOCS_BASE_URL}/custom-actions"
            )
            raise error

    setattr(_validate_action_result, _INSTALLED, True)
    RemoteAction._validate_action_result = _validate_action_result
