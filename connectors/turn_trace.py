"""The connector pipeline's traces: one trace per inbound turn (see ``threadline.tracing``).

``ThreadlineInput.handle_envelope`` is wrapped by ``traced_turn``: each
envelope's turn is the root span ``threadline.turn`` of a new trace, whose id
is also the ``trace_id`` of the message's metadata and of the log lines. Under
it: ``threadline.verify`` and ``threadline.parse`` (measured by ``step`` in
``receive``, before any turn exists, and recorded on the delivery's first
turn), ``threadline.identify``, ``threadline.rasa`` (``on_new_message``: NLU,
policies, actions, the outbound sends) and whatever those start.

At the end of a turn its span context is kept as the customer's last
(``tracing.remember_turn``); when the one it replaces was on another channel,
the turn gets a span *link* to it (not a parent: each turn stays its own
trace), so WhatsApp -> voice -> web reads as a chain of linked traces.

A request refused before any turn (a bad signature, a malformed body) is a
``threadline.webhook`` span of its own, with its verify and parse steps.

With tracing off both wrappers call straight through.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Tuple

from threadline import tracing

_request: contextvars.ContextVar[Optional["_RequestTiming"]] = contextvars.ContextVar("threadline_request", default=None)


@dataclass
class _RequestTiming:
    """What ``receive`` measured before the turns existed."""

    started: int
    steps: List[Tuple[str, int, int]] = field(default_factory=list)
    turns: int = 0


_UNTIMED = contextlib.nullcontext()


def step(name: str) -> Any:
    """Time one step of ``receive`` (``verify``, ``parse``) for the turn spans to come (off: a shared no-op)."""
    timing = _request.get()
    return _UNTIMED if timing is None else _timed(timing, name)


@contextlib.contextmanager
def _timed(timing: _RequestTiming, name: str) -> Iterator[None]:
    started = time.time_ns()
    try:
        yield
    finally:
        timing.steps.append((name, started, time.time_ns()))


def traced_request(receive: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``receive``: collect its steps; a request that made no turn gets a span of its own."""

    @functools.wraps(receive)
    async def wrapper(self: Any, inbound: Any, on_new_message: Any) -> Any:
        if not tracing.enabled() or _request.get() is not None:  # a subclass's receive calling the base's
            return await receive(self, inbound, on_new_message)
        timing = _RequestTiming(time.time_ns())
        token = _request.set(timing)
        try:
            result = await receive(self, inbound, on_new_message)
        finally:
            _request.reset(token)
        if timing.turns == 0:
            status = getattr(result, "status", None)
            with tracing.span("threadline.webhook", {tracing.CHANNEL: self.name()}, kind="server",
                              start_time=timing.started, root=True) as span:
                _record_steps(timing)
                if status is not None:
                    span.set_attribute("http.response.status_code", int(status))
        return result

    return wrapper


def traced_turn(handle: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``handle_envelope``: the turn's root span, its pseudonymous customer and the switch link."""

    @functools.wraps(handle)
    async def wrapper(self: Any, delivery: Any, envelope: Any, on_new_message: Any) -> Any:
        if not tracing.enabled():
            return await handle(self, delivery, envelope, on_new_message)
        timing = _request.get()
        first = timing is not None and timing.turns == 0
        if timing is not None:
            timing.turns += 1
        attributes = {tracing.CHANNEL: self.name(), tracing.MESSAGE_KIND: str(envelope.kind)}
        with tracing.span("threadline.turn", attributes, kind="server", root=True,
                          start_time=timing.started if first else None) as span:
            if first:
                _record_steps(timing)
            outcome = await handle(self, delivery, envelope, on_new_message)
            span.set_attribute(tracing.OUTCOME, str(outcome.status))
            customer = getattr(outcome, "customer_id", None)
            if customer:
                span.set_attribute(tracing.CUSTOMER, tracing.pseudonym(customer))
                await _remember(self, span, customer)
        return outcome

    return wrapper


async def _remember(channel: Any, span: Any, customer_id: str) -> None:
    """Keep this turn as the customer's last; link it to the one before if that was elsewhere."""
    import asyncio
    import logging

    try:
        last = await asyncio.to_thread(tracing.remember_turn, customer_id, channel.name(),
                                       span.get_span_context(), channel.redis_client())
    except Exception:  # tracing never fails a turn
        logging.getLogger(__name__).warning("could not keep the turn's trace context", exc_info=True)
        return
    tracing.link_switch(span, channel.name(), last)


def _record_steps(timing: _RequestTiming) -> None:
    for name, started, ended in timing.steps:
        tracing.record_span(f"threadline.{name}", started, ended)
