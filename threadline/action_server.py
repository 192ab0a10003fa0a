"""The action server, reachable only by the rasa server: ``python -m threadline.action_server``.

It is rasa-sdk's own app (``rasa_sdk.endpoint.create_app`` with the
``actions`` package) with two things added:

* it listens on ``ACTION_HOST`` (loopback by default) and ``ACTION_PORT``;
* every call to ``/webhook`` and ``/actions`` must carry the shared secret in
  ``X-Threadline-Action-Token`` (``settings.secret("action_server_token")``,
  which the rasa server's connectors attach to the action endpoint), compared
  in constant time; anything else is answered 403. ``/health`` stays open.

``GET /threadline`` answers the fingerprint of the code and configuration the
server runs, so the stack launcher never reuses a server started from other
code.

With ``TRACING`` on, each action call is an ``actions.run`` span in the trace
of the rasa server's turn: the request's W3C ``traceparent`` header (sent by
``rasa.action_server``, see ``threadline.rasa_patches``) is read by a request
middleware, and rasa-sdk's ``ActionExecutor.run`` runs inside a span under it.
"""
from __future__ import annotations

import argparse
import contextvars
import functools
import hashlib
import hmac
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Any, List, Optional

from threadline import settings as settings_module
from threadline import tracing

logger = logging.getLogger(__name__)

ACTION_TOKEN_HEADER = "X-Threadline-Action-Token"
OPEN_PATHS = frozenset({"/health", "/threadline"})
_FINGERPRINTED = ("actions", "threadline")
_SETTINGS_FINGERPRINTED = ("DATABASE_URL", "REDIS_URL", "THREADLINE_VAR_DIR", "THREADLINE_KEY_PREFIX")
# The trace context of the call being served (set for every request, so a kept-alive connection never reuses one).
_caller: contextvars.ContextVar = contextvars.ContextVar("threadline_action_caller", default=None)


def fingerprint(config: Optional[settings_module.Settings] = None, root: Optional[Path] = None) -> str:
    """A digest of the fulfillment code and the settings it depends on."""
    config = config or settings_module.get()
    root = root or settings_module.PROJECT_ROOT
    digest = hashlib.sha256()
    for package in _FINGERPRINTED:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    for name in _SETTINGS_FINGERPRINTED:
        digest.update(f"{name}={config.get_raw(name) or ''}".encode())
    return digest.hexdigest()[:16]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(action_package: str = "actions", config: Optional[settings_module.Settings] = None) -> Any:
    """rasa-sdk's app for ``action_package``, guarded by the shared secret."""
    from rasa_sdk.endpoint import create_app as sdk_app
    from sanic import response

    config = config or settings_module.get()
    token = config.secret("action_server_token").encode()
    app = sdk_app(action_package, cors_origins=None)
    print_digest = fingerprint(config)

    @app.middleware("request")
    async def only_the_rasa_server(request: Any) -> Any:
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get(ACTION_TOKEN_HEADER) or ""
        if not given.isascii() or not hmac.compare_digest(given.encode(), token):
            logger.warning("action server: call without the rasa server's token refused (%s)", request.path)
            return response.json({"error": "this action server answers only its rasa server"}, status=403)
        return None

    @app.get("/threadline")
    async def threadline_fingerprint(_: Any) -> Any:
        return response.json({"fingerprint": print_digest})

    @app.middleware("request")
    async def trace_context(request: Any) -> None:
        _caller.set(tracing.extract(request.headers) if tracing.enabled() else None)

    _trace_executor()
    return app


def _trace_executor() -> None:
    """Run every action inside an ``actions.run`` span, child of the caller's (idempotent)."""
    from rasa_sdk.executor import ActionExecutor

    run = ActionExecutor.run
    if getattr(run, "_threadline_traced", False):
        return

    @functools.wraps(run)
    async def traced_run(self: Any, action_call: Any) -> Any:
        if not tracing.enabled():
            return await run(self, action_call)
        attributes = {tracing.ACTION: str(action_call.get("next_action") or "")}
        channel = (action_call.get("tracker") or {}).get("latest_input_channel")
        if channel:
            attributes[tracing.CHANNEL] = str(channel)
        if action_call.get("sender_id"):
            attributes[tracing.CUSTOMER] = tracing.pseudonym(str(action_call["sender_id"]))
        with tracing.span("actions.run", attributes, kind="server", context=_caller.get()):
            return await run(self, action_call)

    traced_run._threadline_traced = True  # type: ignore[attr-defined]
    ActionExecutor.run = traced_run


def main(argv: Optional[List[str]] = None) -> int:
    """Serve the actions (see the module docstring)."""
    config = settings_module.get()
    parser = argparse.ArgumentParser(prog="python -m threadline.action_server", description=__doc__)
    parser.add_argument("--host", default=config.get("ACTION_HOST"))
    parser.add_argument("--port", type=int, default=config.integer("ACTION_PORT"))
    parser.add_argument("--actions", default="actions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-8s %(name)s  - %(message)s")
    from threadline import log_privacy, pii

    log_privacy.install()
    pii.warm_up()
    tracing.setup("actions", config)
    if not is_loopback(args.host) and not config.is_set("ACTION_SERVER_TOKEN") and not config.is_set(
        "THREADLINE_SECRET_KEY"
    ):
        print(f"error: the action server would listen on {args.host} with a token only this machine knows; "
              "set THREADLINE_SECRET_KEY (or ACTION_SERVER_TOKEN) on both servers", file=sys.stderr)
        return 2
    app = create_app(args.actions, config)
    logger.info("Action server on http://%s:%d (token required)", args.host, args.port)
    app.run(args.host, args.port, workers=1, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
