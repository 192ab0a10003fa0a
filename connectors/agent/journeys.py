"""The desk's journey routes, for signed-in agents and supervisors (JSON).

    GET  /webhooks/agent/journeys[?customer=c_...&status=active&journey=name]
         -> {"journeys": [{name, description, trigger, steps}], "instances": [...], "queue": {...}}
    POST /webhooks/agent/journeys            {"journey": name, "customer": c_... | "phone": "+1...",
                                              "context": {"vehicle": "Golf"}}   -> 201 {"instance": id}
    POST /webhooks/agent/journeys/<id>/cancel                                   -> {"cancelled": true}

POSTs need the session's CSRF token (``X-CSRF-Token``), like every desk
action. A refused start says why (unknown journey, missing context, unknown
phone number) with a 400 or 404; cancelling one that already ended is a 409.
The same operations exist on the command line: ``python -m threadline.journeys``.
"""
from __future__ import annotations

from typing import Any, Dict

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.base import run_sync
from threadline import identity
from threadline.journeys import service, store


def describe(journey: Any) -> Dict[str, Any]:
    """A journey definition as the desk shows it."""
    return {
        "name": journey.name, "description": journey.description, "trigger": journey.event or "operator",
        "purpose": journey.purpose, "cancel_on_reply": journey.cancel_on_reply, "required": list(journey.required),
        "steps": [{"name": s.name, "wait_seconds": int(s.wait.total_seconds()), "channels": list(s.channels),
                   "call": list(s.call), "response": s.response, "unless": list(s.unless)} for s in journey.steps],
    }


def register(blueprint: Blueprint, desk: Any) -> None:
    """Add the routes to the desk's blueprint (``desk`` gives sessions, CSRF and refusals)."""
    from connectors.agent.channel import Refusal

    @blueprint.route("/journeys", methods=["GET"])
    @desk.guarded
    async def journeys_list(request: Request) -> HTTPResponse:
        await desk.session(request)
        status = request.args.get("status") or None
        if status and status not in (store.ACTIVE, store.COMPLETED, store.CANCELLED, store.REPLIED):
            raise Refusal(400, f"unknown status {status!r} (active, completed, cancelled or replied)")
        instances = await run_sync(store.list_instances, request.args.get("customer") or None, status,
                                   request.args.get("journey") or None)
        return response.json({
            "journeys": [describe(j) for j in service.journeys().values()],
            "instances": instances, "queue": await run_sync(store.queue_depth),
        })

    @blueprint.route("/journeys", methods=["POST"])
    @desk.guarded
    async def journeys_start(request: Request) -> HTTPResponse:
        session = await desk.session(request)
        desk.check_csrf(request, session)
        try:
            body = request.json
        except Exception:
            body = None
        if not isinstance(body, dict):
            raise Refusal(400, "send a JSON object: {\"journey\": ..., \"customer\" or \"phone\": ..., \"context\": {...}}")
        customer = body.get("customer")
        if not customer and body.get("phone"):
            phone = identity.normalise_phone(str(body["phone"]))
            customer = await run_sync(identity.customer_for_phone, phone) if phone else None
            if not customer:
                raise Refusal(404, f"no customer has the phone number {body['phone']}")
        if not isinstance(customer, str) or not customer:
            raise Refusal(400, "say who: \"customer\" (a customer id) or \"phone\"")
        context = body.get("context") or {}
        if not isinstance(context, dict):
            raise Refusal(400, "context must be an object of names to values")
        try:
            instance = await run_sync(service.start, str(body.get("journey") or ""), customer, context,
                                      "operator", f"desk/{session.agent}")
        except service.JourneyRefused as refused:
            raise Refusal(400, str(refused)) from None
        return response.json({"ok": True, "instance": instance}, status=201)

    @blueprint.route("/journeys/<instance_id:int>/cancel", methods=["POST"])
    @desk.guarded
    async def journeys_cancel(request: Request, instance_id: int) -> HTTPResponse:
        session = await desk.session(request)
        desk.check_csrf(request, session)
        if await run_sync(store.instance_status, instance_id) is None:
            raise Refusal(404, f"There is no journey #{instance_id}.")
        if not await run_sync(service.cancel, instance_id, f"desk/{session.agent}"):
            raise Refusal(409, f"Journey #{instance_id} has already ended.")
        return response.json({"ok": True, "cancelled": True})
