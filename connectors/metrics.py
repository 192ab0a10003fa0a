"""``GET /webhooks/metrics/``: the stack's Prometheus metrics, for a scraper holding ``METRICS_TOKEN``.

``MetricsInput`` receives no customer messages. Its one route serves what
every process of this machine's stack wrote to the metrics directory
(``threadline.metrics``: the rasa server's turns, outbound failures and
journey worker, the action server's handoffs), added up, in Prometheus's
text format. It asks for ``Authorization: Bearer <METRICS_TOKEN>``: a missing
or wrong token is a 401; with ``METRICS_TOKEN`` unset the route answers 503
and says what to set (it fails closed: nothing is exposed without a token).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, Optional

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.base import constant_time_equals, error_response, run_sync
from threadline import metrics
from threadline import settings as settings_module

logger = logging.getLogger(__name__)


def bearer_token(request: Request) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class MetricsInput(InputChannel):
    """Serves the Prometheus metrics; receives no customer messages."""

    # For the stack's banner: "channel off ... (set METRICS_TOKEN)".
    credential_env: Dict[str, str] = {"token": "METRICS_TOKEN"}

    @classmethod
    def name(cls) -> str:
        """Routes live under ``/webhooks/metrics/``."""
        return "metrics"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "MetricsInput":
        """Nothing to configure in credentials.yml: the token is read from ``METRICS_TOKEN`` per request."""
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """``GET /``: the exposition."""
        blueprint = Blueprint("threadline_metrics", __name__)

        @blueprint.route("/", methods=["GET"])
        async def scrape(request: Request) -> HTTPResponse:
            refused = self.refusal(request)
            if refused is not None:
                return refused
            body = await run_sync(metrics.exposition)
            return response.raw(body, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})

        return blueprint

    @staticmethod
    def refusal(request: Request) -> Optional[HTTPResponse]:
        """Why ``request`` may not read the metrics (503 unset, 401 missing or wrong), or None."""
        expected = settings_module.get().get_raw("METRICS_TOKEN")
        if not expected:
            return error_response(503, "metrics are off: set METRICS_TOKEN and scrape with "
                                       "'Authorization: Bearer <METRICS_TOKEN>'")
        given = bearer_token(request)
        if given is None or not constant_time_equals(given, expected):
            logger.warning("metrics: refused a scrape from %s (token %s)", request.remote_addr or request.ip,
                           "wrong" if given else "missing")
            return error_response(401, "the metrics need 'Authorization: Bearer <METRICS_TOKEN>'",
                                  {"WWW-Authenticate": 'Bearer realm="metrics"'})
        return None
