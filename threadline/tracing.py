"""OpenTelemetry traces: one process's tracer, span helpers, propagation and the channel-switch link.

Off by default. ``TRACING`` (``off`` | ``otlp`` | ``console``) and
``TRACING_SERVICE_NAME`` come from the settings registry; with ``otlp`` the
exporter (OTLP over HTTP) reads the standard ``OTEL_EXPORTER_OTLP_*``
variables itself (endpoint, headers, timeout), which is the only environment
read outside ``threadline.settings``.

Each process sets its tracer up once: the rasa server in
``threadline.rasa_patches.install`` (``setup("rasa")``), the action server in
``threadline.action_server.main`` (``setup("actions")``); spans leave through a
``BatchSpanProcessor``. Tests call ``configure(exporter=InMemorySpanExporter())``.

When tracing is off, ``span()`` hands back one shared no-op context manager
and nothing else runs: no provider, no exporter, no Redis round trip.

What a span may carry: the channel, a customer *pseudonym*
(``pseudonym(customer_id)``, an HMAC under a key derived from the secret key,
never the customer id itself), intent and action names, statuses and counts.
Never a phone number, email, name or message text.

Propagation is W3C trace context (``traceparent``): ``inject()`` gives the
headers for an outgoing call (the rasa server's call to the action server),
``extract(headers)`` the parent context on the other side.

A turn on a new channel links to the customer's last turn on the previous one:
``remember_turn`` keeps the last turn's span context per customer in Redis
(``{p}:trace:last:{customer}``, 24 h) and returns the one it replaced.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from threadline import settings as settings_module

logger = logging.getLogger(__name__)

MODES = ("off", "otlp", "console")
TRACER_NAME = "threadline"
LAST_TURN_TTL = 24 * 3600

# Attribute names (the README lists them).
CHANNEL = "threadline.channel"
CUSTOMER = "threadline.customer"
PREVIOUS_CHANNEL = "threadline.previous_channel"
OUTCOME = "threadline.outcome"
MESSAGE_KIND = "threadline.message_kind"
TRUST = "threadline.trust"
ACTION = "rasa.action"
INTENT = "rasa.intent"
CONFIDENCE = "rasa.confidence"
POLICY = "rasa.policy"

_tracer: Any = None
_provider: Any = None
_configured = False


class _Null:
    """Stands in for a span when tracing is off: every method does nothing."""

    def set_attribute(self, *_: Any) -> None:
        """Nothing."""

    def add_link(self, *_: Any, **__: Any) -> None:
        """Nothing."""

    def is_recording(self) -> bool:
        """Never."""
        return False


NULL_SPAN = _Null()
_NOOP = contextlib.nullcontext(NULL_SPAN)  # what span() returns when tracing is off (re-entrant)


# ------------------------------------------------------------------ set-up


def setup(role: str, config: Optional[settings_module.Settings] = None) -> bool:
    """Set this process's tracer up from the settings, once; returns whether tracing is on."""
    if _configured:
        return enabled()
    return configure(role, config=config)


def configure(
    role: str = "rasa",
    *,
    config: Optional[settings_module.Settings] = None,
    exporter: Any = None,
) -> bool:
    """(Re)build the tracer: ``exporter`` wins over ``TRACING`` (tests pass an in-memory one).

    ``role`` names the process (``rasa`` or ``actions``) in ``service.name``.
    A ``TRACING`` value other than off, otlp or console is an error.
    """
    global _tracer, _provider, _configured
    config = config or settings_module.get()
    mode = (config.get("TRACING") or "off").strip().lower()
    if mode not in MODES:
        raise settings_module.SettingsError(f"TRACING must be one of {', '.join(MODES)}, not {mode!r}")
    shutdown()
    _configured = True
    if exporter is None and mode == "off":
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter is None:
        if mode == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* are read by the exporter
        else:
            exporter = ConsoleSpanExporter()
    service = f"{config.get('TRACING_SERVICE_NAME') or 'threadline'}-{role}"
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer(TRACER_NAME)
    logger.info("traces on (%s), service %s", "test exporter" if mode == "off" else mode, service)
    return True


def shutdown() -> None:
    """Flush and stop the tracer (tracing is off afterwards until configured again)."""
    global _tracer, _provider, _configured
    provider, _tracer, _provider, _configured = _provider, None, None, False
    if provider is not None:
        provider.shutdown()


def flush(timeout_millis: int = 5000) -> None:
    """Export every finished span now (tests; the batch processor otherwise exports on its own)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def enabled() -> bool:
    """Whether this process records spans."""
    return _tracer is not None


# ------------------------------------------------------------------- spans


def span(
    name: str,
    attributes: Optional[Mapping[str, Any]] = None,
    *,
    kind: str = "internal",
    context: Any = None,
    links: Optional[Sequence[Any]] = None,
    start_time: Optional[int] = None,
    root: bool = False,
) -> Any:
    """A context manager for a span under the current one (``root``: a new trace).

    ``kind`` is ``internal``, ``server`` or ``client``; ``context`` a parent
    from ``extract``. Off: the shared no-op, yielding ``NULL_SPAN``.
    """
    if _tracer is None:
        return _NOOP
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanKind

    if root:
        context = otel_context.Context()
    return _recording(_tracer.start_as_current_span(
        name, context=context, kind=getattr(SpanKind, kind.upper()), attributes=dict(attributes or {}),
        links=links, start_time=start_time, record_exception=False, set_status_on_exception=False,
    ))


@contextlib.contextmanager
def _recording(manager: Any) -> Iterator[Any]:
    """A failure marks the span with the exception's *type* only: a message may quote personal data."""
    with manager as active:
        try:
            yield active
        except BaseException as exc:
            from opentelemetry.trace import Status, StatusCode

            active.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            active.set_attribute("error.type", type(exc).__name__)
            raise


def record_span(name: str, start_time: int, end_time: int, attributes: Optional[Mapping[str, Any]] = None) -> None:
    """A finished span under the current one, from times measured before it could exist."""
    if _tracer is None:
        return
    _tracer.start_span(name, attributes=dict(attributes or {}), start_time=start_time).end(end_time=end_time)


def current() -> Any:
    """The current span (``NULL_SPAN`` when tracing is off or none is active)."""
    if _tracer is None:
        return NULL_SPAN
    from opentelemetry import trace

    found = trace.get_current_span()
    return found if found.get_span_context().is_valid else NULL_SPAN


def current_trace_id() -> Optional[str]:
    """The current trace's id as 32 hex digits (what message metadata and logs carry), or None."""
    if _tracer is None:
        return None
    context = current_context()
    return format(context.trace_id, "032x") if context is not None else None


def current_context() -> Any:
    """The current span's ``SpanContext``, or None."""
    found = current()
    return found.get_span_context() if found is not NULL_SPAN else None


def pseudonym(customer_id: str) -> str:
    """What spans call a customer: an HMAC of the customer id under the trace key (16 hex digits)."""
    key = settings_module.get().secret("trace_key").encode()
    return hmac.new(key, f"customer:{customer_id}".encode(), hashlib.sha256).hexdigest()[:16]


# ------------------------------------------------------------- propagation


def inject() -> Dict[str, str]:
    """W3C trace-context headers (``traceparent``) for an outgoing call; empty when off."""
    if _tracer is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: Dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def extract(headers: Mapping[str, Any]) -> Any:
    """The parent context an incoming call's ``traceparent`` names (None when off or absent)."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    value = headers.get("traceparent")
    if not value:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": str(value)})


# ------------------------------------------------------- the channel switch


def remember_turn(customer_id: str, channel: str, span_context: Any, redis: Any) -> Optional[Dict[str, str]]:
    """Keep this turn as the customer's last (24 h); returns the last turn it replaces (blocking).

    Stored: the channel, the trace id and the span id, nothing else.
    """
    from threadline.keys import Keys

    value = json.dumps({"channel": channel, "trace_id": format(span_context.trace_id, "032x"),
                        "span_id": format(span_context.span_id, "016x")})
    pipe = redis.pipeline(transaction=True)
    key = Keys().trace_last(customer_id)
    pipe.get(key)
    pipe.set(key, value, ex=LAST_TURN_TTL)
    previous, _ = pipe.execute()
    if not previous:
        return None
    try:
        found = json.loads(previous)
        return found if isinstance(found, dict) else None
    except ValueError:
        return None


def link_switch(span_: Any, channel: str, last_turn: Optional[Mapping[str, str]]) -> bool:
    """Link ``span_`` to the remembered last turn if it was on another channel; returns whether it did."""
    if not last_turn or last_turn.get("channel") in (None, channel) or not span_.is_recording():
        return False
    from opentelemetry.trace import SpanContext, TraceFlags

    try:
        context = SpanContext(
            trace_id=int(last_turn["trace_id"], 16), span_id=int(last_turn["span_id"], 16),
            is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except (KeyError, TypeError, ValueError):
        return False
    previous = str(last_turn["channel"])
    span_.add_link(context, {"threadline.link": "channel_switch", PREVIOUS_CHANNEL: previous})
    span_.set_attribute(PREVIOUS_CHANNEL, previous)
    return True
