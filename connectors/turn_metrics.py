"""The connector pipeline's metrics: one observation per turn that reached the bot (see ``threadline.metrics``).

``ThreadlineInput.handle_envelope`` is wrapped by ``measured_turn``. While the
turn runs, the latest turn of the tracker Rasa saves is kept
(``metrics.capturing_turn``; the tracker store calls ``metrics.note_saved``),
so nothing is read back from Redis. When the envelope was processed by the
bot (``on_new_message`` ran), the turn's latency is recorded from the
webhook's arrival (``Inbound.received``) to now, and from the saved turn the
top intent's confidence and whether the turn fell back. Duplicates, rate-limited,
unreadable and intercepted envelopes (opt-out keywords, link codes) are not
bot turns and are not measured. Only the channel name is a label.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable

from threadline import metrics


def measured_turn(handle: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``handle_envelope``: record latency, confidence and fallback of a bot turn."""

    @functools.wraps(handle)
    async def wrapper(self: Any, delivery: Any, envelope: Any, on_new_message: Any) -> Any:
        with metrics.capturing_turn() as capture:
            outcome = await handle(self, delivery, envelope, on_new_message)
        if getattr(outcome, "status", None) == "processed" and getattr(outcome, "message", None) is not None:
            received = getattr(delivery.inbound, "received", None)
            seconds = time.monotonic() - received if received is not None else 0.0
            metrics.observe_turn(self.name(), seconds, capture.events, envelope.message_id)
        return outcome

    return wrapper
