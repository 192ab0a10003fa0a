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


def test_request_bodies_are_encoded_with_ujson_and_arrive_as_the_same_json():
    import asyncio
    import json

    from aiohttp import web
    from rasa.utils.endpoints import EndpointConfig

    rasa_patches.install()
    body = {"next_action": "action_x", "sender_id": "c_1", "version": "3.6.21", "tracker": {"events": [
        {"event": "user", "text": "Straße 5/7, caf\u00e9 \U0001f600 \"quoted\" \\ <b>", "timestamp": 1764839480.123456,
         "parse_data": {"intent": {"name": "greet", "confidence": 0.9876543210123}, "entities": []}},
        {"event": "slot", "name": "order_number", "value": None}, {"event": "bot", "data": {"n": 10 ** 15}},
    ]}}
    seen = []

    async def webhook(request):
        raw = await request.read()  # aiohttp inflates a compressed body
        assert raw == rasa_patches._json_body(body)  # ujson's bytes (json.dumps would put spaces after , and :)
        seen.append((request.headers.get("Content-Type"), request.headers.get("Content-Encoding"), json.loads(raw)))
        return web.json_response({"events": [], "responses": []})

    async def scenario():
        app = web.Application()
        app.router.add_post("/webhook", webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook")
            answers = [await endpoint.request(json=body, method="post"),
                       await endpoint.request(json=body, method="post", compress=True)]
        finally:
            await runner.cleanup()
        return answers

    answers = asyncio.run(scenario())
    assert answers == [{"events": [], "responses": []}] * 2
    assert seen == [("application/json", None, body), ("application/json", "deflate", body)]
    assert json.loads(rasa_patches._json_body(body)) == body
