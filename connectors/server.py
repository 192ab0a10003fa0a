"""What Threadline installs on the rasa server once, whichever connector loads first.

Rasa builds the Sanic app itself (``rasa.core.run.configure_app``); connectors
are the one place Threadline code runs inside it. Every Threadline blueprint
registers ``install`` as a ``before_server_start`` listener, and the first one
to run:

* caps every request body at ``MAX_BODY_BYTES`` (Sanic's ``REQUEST_MAX_SIZE``,
  100 MB by default): the HTTP API, the desk and Rasa's own routes answer 413
  above it, and Threadline's streamed webhooks apply the same limit;
* answers errors as JSON (a status and a message, never a page or a trace).

(The action server's token rides on every action call from
``threadline.rasa_patches``, which every rasa process installs.)

``client_address`` and ``request_scheme`` read who is calling through the
configured reverse proxies only.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

from sanic.request import Request

from threadline import limits
from threadline import settings as settings_module

logger = logging.getLogger(__name__)

_trusted_cache: dict = {}


def trusted_proxies() -> List[Any]:
    """The configured reverse proxies, parsed once per setting."""
    raw = settings_module.get().get("THREADLINE_TRUSTED_PROXIES") or ""
    if raw not in _trusted_cache:
        _trusted_cache[raw] = limits.parse_networks(part for part in raw.split(",") if part.strip())
    return _trusted_cache[raw]


def client_address(request: Request) -> str:
    """The caller's address; ``X-Forwarded-For`` counts only from a trusted proxy."""
    peer = getattr(request, "ip", None) or ""
    try:
        peer = request.conn_info.client_ip if request.conn_info else peer  # never the forwarded one
    except AttributeError:
        pass
    return limits.client_address(peer, request.headers, trusted_proxies())


def request_scheme(request: Request) -> str:
    """``https`` when the client used TLS, directly or through a trusted proxy."""
    peer = request.conn_info.client_ip if getattr(request, "conn_info", None) else ""
    scheme = "https" if getattr(request.conn_info, "ssl", False) else "http"
    return limits.forwarded_scheme(peer, request.headers, trusted_proxies(), scheme)


def install(app: Any, *_: Any) -> None:
    """Apply the server-wide settings to ``app`` (idempotent)."""
    if getattr(app.ctx, "threadline_installed", False):
        return
    app.ctx.threadline_installed = True
    config = settings_module.get()
    app.config.REQUEST_MAX_SIZE = config.integer("MAX_BODY_BYTES")
    app.config.FALLBACK_ERROR_FORMAT = "json"


def register(blueprint: Any) -> None:
    """Make ``blueprint`` install the server-wide settings when the server starts."""
    blueprint.listener("before_server_start")(install)


def retry_after_headers(seconds: Optional[int]) -> dict:
    """The ``Retry-After`` header for a 429 or 503."""
    return {"Retry-After": str(max(1, int(seconds or 1)))}
