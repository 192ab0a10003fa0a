"""Threadline's changes to Rasa 3.6's runtime, installed when the rasa process builds its tracker store.

1. **The action server's token.** Every custom action call (``RemoteAction``)
   carries ``X-Threadline-Action-Token``, the shared secret the action server
   checks (``threadline.action_server``), whether the process is ``rasa run``,
   ``rasa shell`` or the stack's; endpoints.yml never holds it.

2. **One measured fix to the hot path.** ``RemoteAction._validate_action_result`` checks every action-server response
with ``jsonschema.validate``, which first re-validates the response *schema*
against its meta-schema (draft 2020-12, with dynamic references) on every
call. Profiling a turn with py-spy put that at 47% of the rasa server's CPU.
The fix validates the same responses against the same schema with a validator
built once, and raises the same error with the same message; Rasa's own
behaviour is otherwise untouched.

3. **The bot's own output passes the personal-data filter.** Every bot
   message becomes a ``BotUttered`` in ``create_bot_utterance``; its text and
   button titles are scrubbed there (``threadline.pii.scrub``), so the
   tracker, the event broker, the desk and the output channels only see
   placeholders if an action ever put a raw value in a message.

4. **Logs**: ``threadline.log_privacy`` scrubs every log record of the process.

5. **A conversation store that is down fails the turn.** Rasa wraps every
   tracker store in ``FailSafeTrackerStore``, which answers a failed
   ``retrieve`` with no conversation (the turn starts afresh) and a failed
   ``save`` by saving into an in-memory store of that one process: the webhook
   then answers 200 and the message is gone once the process ends
   (``bench/load.py`` lost one that way across a Redis restart). For
   Threadline's store the error goes up instead, so the connector releases
   the delivery's claim and answers non-200, and the platform's retry runs the
   turn again once Redis is back. Other stores keep Rasa's behaviour.

6. **Traces** (``threadline.tracing``, off unless ``TRACING`` is set): the
   process's tracer is set up here (``tracing.setup("rasa")``), and three
   seams of Rasa get a span each while tracing is on (with it off they call
   straight through):
   ``MessageProcessor.parse_message`` -> ``rasa.nlu`` (intent name and
   confidence), ``MessageProcessor.predict_next_with_tracker_if_should`` ->
   ``rasa.policies`` (predicted action, policy, confidence; once per
   predicted action), and ``RemoteAction.run`` -> ``rasa.action_server`` (a
   client span named for the action), whose HTTP call carries the span's W3C
   ``traceparent``: ``run`` swaps in a copy of the endpoint with that header
   for the one call (a ``RemoteAction`` is built per prediction, so the
   shared endpoint is never touched), and the action server continues the
   trace (``threadline.action_server``).

7. **A push channel's replies go out after the save, inside the lock.**
   ``MessageProcessor.handle_message`` sends each reply as its action runs and
   saves the turn at the end; a process killed in between has answered a turn
   that is not stored, and the platform's retry answers it twice. Connectors
   whose replies are API calls hold them (``connectors.reply_outbox``); here,
   once ``handle_message`` has saved the turn, and before ``Agent`` releases
   the conversation's lock (so two turns' replies never interleave), they are
   sent. Any other output channel is untouched.

8. **Request bodies are encoded with ujson.** Rasa posts the whole tracker
   (every event of the session) to the action server on every custom action,
   through aiohttp's ``json=``, which encodes with the standard library:
   8.6% of a saturated replica's CPU in the load test's profile. ujson (which
   Rasa already pins, and which Sanic on the action server side already
   decodes with) encodes the same body 2.5x faster; the bytes decode to the
   same value, and are sent with the same ``Content-Type``. Only
   ``EndpointConfig.request``'s JSON bodies change.
"""
import functools
from typing import Any, Dict

import ujson

_INSTALLED = "_threadline_compiled_validator"


@functools.lru_cache(maxsize=1)
def _response_validator() -> Any:
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)  # once, instead of on every response
    return cls(schema)


ACTION_TOKEN_HEADER = "X-Threadline-Action-Token"


def _install_action_token(RemoteAction: Any) -> None:
    original = RemoteAction.__init__
    if getattr(original, _INSTALLED, False):
        return

    @functools.wraps(original)
    def __init__(self: Any, name: str, action_endpoint: Any) -> None:
        original(self, name, action_endpoint)
        if action_endpoint is not None and ACTION_TOKEN_HEADER not in (action_endpoint.headers or {}):
            from threadline import settings

            action_endpoint.headers = dict(action_endpoint.headers or {})
            action_endpoint.headers[ACTION_TOKEN_HEADER] = settings.get().secret("action_server_token")

    setattr(__init__, _INSTALLED, True)
    RemoteAction.__init__ = __init__


def _install_output_filter() -> None:
    from rasa.core.actions import action as rasa_action

    original = rasa_action.create_bot_utterance
    if getattr(original, _INSTALLED, False):
        return

    @functools.wraps(original)
    def create_bot_utterance(message: Dict[str, Any]) -> Any:
        from threadline import pii

        if isinstance(message.get("text"), str):
            message["text"] = pii.scrub(message["text"])
        if isinstance(message.get("buttons"), list):
            message["buttons"] = [
                dict(button, title=pii.scrub(button["title"]))
                if isinstance(button, dict) and isinstance(button.get("title"), str) else button
                for button in message["buttons"]
            ]
        return original(message)

    setattr(create_bot_utterance, _INSTALLED, True)
    rasa_action.create_bot_utterance = create_bot_utterance


def install() -> None:
    """Attach the action token, the output and log filters; compile the response validator (idempotent)."""
    from jsonschema import ValidationError
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    from threadline import log_privacy, pii

    log_privacy.install()
    _install_output_filter()
    _install_replies_after_save()
    _install_fail_loudly()
    _install_tracing(RemoteAction)
    _install_fast_request_json()
    pii.warm_up()
    _install_action_token(RemoteAction)
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


def _json_body(value: Any) -> bytes:
    return ujson.dumps(value, escape_forward_slashes=False).encode()


def _install_fast_request_json() -> None:
    from rasa.utils.endpoints import EndpointConfig

    original = EndpointConfig.request
    if getattr(original, _INSTALLED, False):
        return

    @functools.wraps(original)
    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (kwargs.get("json") is not None and "data" not in kwargs and not args
                and kwargs.get("content_type", "application/json") == "application/json"):
            kwargs["data"] = _json_body(kwargs.pop("json"))
        return await original(self, *args, **kwargs)

    setattr(request, _INSTALLED, True)
    EndpointConfig.request = request


def _install_replies_after_save() -> None:
    from rasa.core.processor import MessageProcessor

    from connectors import reply_outbox

    original = MessageProcessor.handle_message
    if getattr(original, _INSTALLED, False):
        return

    @functools.wraps(original)
    async def handle_message(self: Any, message: Any) -> Any:
        result = await original(self, message)
        await reply_outbox.flush(message.output_channel)
        return result

    setattr(handle_message, _INSTALLED, True)
    MessageProcessor.handle_message = handle_message


def _install_fail_loudly() -> None:
    from rasa.core.tracker_store import FailSafeTrackerStore

    if getattr(FailSafeTrackerStore.save, _INSTALLED, False):
        return
    originals = {name: getattr(FailSafeTrackerStore, name)
                 for name in ("save", "retrieve", "retrieve_full_tracker")}

    def ours(store: Any) -> bool:
        from threadline.tracker_store import RedisEventLogTrackerStore

        return isinstance(getattr(store, "_tracker_store", None), RedisEventLogTrackerStore)

    async def save(self: Any, tracker: Any) -> None:
        if ours(self):
            await self._tracker_store.save(tracker)  # an error fails the turn: the platform retries it
            return
        await originals["save"](self, tracker)

    async def retrieve(self: Any, sender_id: str) -> Any:
        if ours(self):
            return await self._tracker_store.retrieve(sender_id)
        return await originals["retrieve"](self, sender_id)

    async def retrieve_full_tracker(self: Any, sender_id: str) -> Any:
        if ours(self):
            return await self._tracker_store.retrieve_full_tracker(sender_id)
        return await originals["retrieve_full_tracker"](self, sender_id)

    for function in (save, retrieve, retrieve_full_tracker):
        functools.update_wrapper(function, originals[function.__name__])
        setattr(function, _INSTALLED, True)
        setattr(FailSafeTrackerStore, function.__name__, function)


def _install_tracing(RemoteAction: Any) -> None:
    import copy

    from rasa.core.processor import MessageProcessor

    from threadline import tracing

    tracing.setup("rasa")
    if getattr(RemoteAction.run, _INSTALLED, False):
        return
    parse_message = MessageProcessor.parse_message
    predict = MessageProcessor.predict_next_with_tracker_if_should
    run = RemoteAction.run

    async def traced_parse_message(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        if not tracing.enabled():
            return await parse_message(self, message, *args, **kwargs)
        with tracing.span("rasa.nlu") as span:
            parse_data = await parse_message(self, message, *args, **kwargs)
            intent = parse_data.get("intent") or {}
            if intent.get("name"):
                span.set_attribute(tracing.INTENT, str(intent["name"]))
                span.set_attribute(tracing.CONFIDENCE, float(intent.get("confidence") or 0.0))
            return parse_data

    def traced_predict(self: Any, tracker: Any) -> Any:
        if not tracing.enabled():
            return predict(self, tracker)
        with tracing.span("rasa.policies") as span:
            action, prediction = predict(self, tracker)
            name = action.name()
            if name in self.domain.action_names_or_texts and name not in self.domain.action_texts:
                span.set_attribute(tracing.ACTION, name)  # never an end-to-end bot text
            span.set_attribute(tracing.POLICY, str(prediction.policy_name or ""))
            span.set_attribute(tracing.CONFIDENCE, float(prediction.max_confidence))
            return action, prediction

    async def traced_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not tracing.enabled():
            return await run(self, *args, **kwargs)
        with tracing.span("rasa.action_server", {tracing.ACTION: self.name()}, kind="client"):
            endpoint = self.action_endpoint
            if endpoint is not None:
                self.action_endpoint = copy.copy(endpoint)
                self.action_endpoint.headers = {**(endpoint.headers or {}), **tracing.inject()}
            try:
                return await run(self, *args, **kwargs)
            finally:
                self.action_endpoint = endpoint

    for original, function in ((parse_message, traced_parse_message), (predict, traced_predict), (run, traced_run)):
        functools.update_wrapper(function, original)
        setattr(function, _INSTALLED, True)
    MessageProcessor.parse_message = traced_parse_message
    MessageProcessor.predict_next_with_tracker_if_should = traced_predict
    RemoteAction.run = traced_run
