"""Prometheus metrics: every metric object in one place, safe across processes.

One stack runs several processes (the rasa server with its journey worker,
the action server, the event relay), so the metrics use prometheus_client's
multiprocess mode: each process writes its values to memory-mapped files in
one directory (``METRICS_DIR``, default ``var/metrics/``), and the rasa
server's ``GET /webhooks/metrics/`` (``connectors.metrics``) adds them up with
``MultiProcessCollector``. The library reads the directory from
``PROMETHEUS_MULTIPROC_DIR`` when it is imported, so this module sets that
variable before it imports prometheus_client; the stack launcher also sets it
for every child (``threadline.stack``) and clears the files of dead processes
when a stack starts (``clear_dead``).

==========================================  ======================  =====================================
metric                                      labels                  what it counts
==========================================  ======================  =====================================
``threadline_turn_latency_seconds``         channel                 webhook arrival -> end of the bot's turn
``threadline_nlu_confidence``               channel                 the top intent's confidence, per turn
``threadline_fallbacks_total``              channel                 turns the bot did not understand
``threadline_handoffs_total``               channel, reason         handoff cases opened
``threadline_outbound_failures_total``      channel, kind           responses not delivered
``threadline_journey_queue_depth``          state                   journey steps waiting / due / claimed
``threadline_journey_sends_total``          channel, outcome        journey steps sent (or not) on a channel
==========================================  ======================  =====================================

Label values come from small fixed sets only (channel names, reasons,
outcomes): ``bounded`` and ``channel_label`` turn anything else into ``other``. A customer id, a
phone number or a message never becomes a label. Recording a metric never
fails the caller: an error is logged and the work goes on.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from threadline import settings as settings_module
from threadline.analytics.fold import FALLBACK_ACTIONS, FALLBACK_INTENTS  # one definition of a fallback
from threadline.journeys.definitions import CALL_CHANNELS, MESSAGE_CHANNELS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY: Path = settings_module.get().metrics_dir
settings_module.export_to_libraries({MULTIPROC_ENV: str(DIRECTORY)})

from prometheus_client import (  # noqa: E402  (after the directory is set: the library reads it on import)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

if values.ValueClass is values.MutexValue:  # something imported prometheus_client before the directory was set
    values.ValueClass = values.get_value_class()

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# The built-in channels; a channel of another project joins when it runs in this process (``channel_label``).
CHANNELS = set(MESSAGE_CHANNELS + CALL_CHANNELS)
OUTBOUND_KINDS = ("suppressed", "failed")
QUEUE_STATES = ("waiting", "due", "claimed")
JOURNEY_OUTCOMES = ("sent", "suppressed", "retry", "failed")

TURN_LATENCY = Histogram(
    "threadline_turn_latency_seconds",
    "Seconds from a webhook's arrival to the end of the bot's turn (NLU, policies, actions, replies sent).",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
)
NLU_CONFIDENCE = Histogram(
    "threadline_nlu_confidence",
    "Confidence of the top intent NLU gave each customer message.",
    ["channel"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
FALLBACKS = Counter(
    "threadline_fallbacks",
    "Customer turns the bot did not understand (NLU fallback, or a fallback action ran).",
    ["channel"],
)
HANDOFFS = Counter(
    "threadline_handoffs",
    "Handoff cases opened (a case still open for the customer is not counted again).",
    ["channel", "reason"],
)
OUTBOUND_FAILURES = Counter(
    "threadline_outbound_failures",
    "Bot responses not delivered: suppressed (consent, the 24 h window) or failed (the platform, no address).",
    ["channel", "kind"],
)
JOURNEY_QUEUE_DEPTH = Gauge(
    "threadline_journey_queue_depth",
    "Journey steps waiting (pending), due now (pending and due) and claimed by a worker.",
    ["state"],
    # Every worker counts the same shared table, so the processes agree: the live maximum is that count
    # (a sum would multiply it by the replicas); a stopped process's figure goes with it.
    multiprocess_mode="livemax",
)
JOURNEY_SENDS = Counter(
    "threadline_journey_sends",
    "Journey steps the worker tried to send on a channel, by outcome (sent, suppressed, retry, failed).",
    ["channel", "outcome"],
)


def bounded(value: Any, allowed: Iterable[str]) -> str:
    """``value`` as a label if it is one of ``allowed``, else ``other``."""
    text = str(value or "")
    return text if text in allowed else OTHER


def channel_label(name: Any, running: bool = False) -> str:
    """A channel name as a label: a known channel, else ``other``.

    ``running=True`` is for a name read off a channel object (``self.name()``,
    code, never data): a channel of another project is then known too, in
    this process.
    """
    text = str(name or "")
    if running and text not in CHANNELS and _NAME.match(text):
        CHANNELS.add(text)
    return bounded(text, CHANNELS)


def _never_raises(function: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.warning("could not record metric (%s)", function.__name__, exc_info=True)

    return wrapper


# ----------------------------------------------------------------- one turn


class TurnCapture:
    """The latest turn's events of the tracker Rasa saved during one turn (set by the tracker store)."""

    events: Optional[List[Any]] = None


_capture: contextvars.ContextVar[Optional[TurnCapture]] = contextvars.ContextVar("threadline_metrics_turn",
                                                                                   default=None)


@contextlib.contextmanager
def capturing_turn() -> Iterator[TurnCapture]:
    """Keep the latest turn of the tracker saved in this task (``note_saved``) for ``observe_turn``."""
    capture = TurnCapture()
    token = _capture.set(capture)
    try:
        yield capture
    finally:
        _capture.reset(token)


def note_saved(tracker: Any) -> None:
    """The tracker store saved ``tracker``: the turn being measured, if any, keeps its latest turn's events.

    Only those: holding the tracker itself kept a whole session's events alive
    past Rasa's turn, to be freed in the connector's frames instead of Rasa's.
    """
    capture = _capture.get()
    if capture is not None:
        capture.events = latest_turn(tracker)


def latest_turn(tracker: Any) -> Optional[List[Any]]:
    """The customer's latest message and what the bot did after it (None: no message), read from the end."""
    from rasa.shared.core.events import UserUttered

    turn: List[Any] = []
    for event in reversed(getattr(tracker, "events", None) or ()):
        turn.append(event)
        if isinstance(event, UserUttered):
            turn.reverse()
            return turn
    return None


@_never_raises
def observe_turn(channel: str, seconds: float, events: Optional[List[Any]] = None,
                 message_id: Optional[str] = None) -> None:
    """One bot turn on ``channel`` (the input's own name): latency; confidence and fallback from its events.

    ``events`` is ``latest_turn``'s; when its message is not ``message_id``, only the latency counts.
    """
    if events and message_id and events[0].message_id and events[0].message_id != message_id:
        events = None
    label = channel_label(channel, running=True)
    TURN_LATENCY.labels(label).observe(max(0.0, seconds))
    if not events:
        return
    intent = events[0].intent or {}
    confidence = intent.get("confidence")
    if isinstance(confidence, (int, float)):
        NLU_CONFIDENCE.labels(label).observe(float(confidence))
    actions = {getattr(event, "action_name", None) for event in events[1:]}
    if intent.get("name") in FALLBACK_INTENTS or actions & FALLBACK_ACTIONS:
        FALLBACKS.labels(label).inc()


# --------------------------------------------------------------- elsewhere


@_never_raises
def count_handoff(channel: Optional[str], reason: str, reasons: Iterable[str]) -> None:
    """A handoff case was opened on ``channel`` for ``reason`` (one of ``reasons``)."""
    HANDOFFS.labels(channel_label(channel), bounded(reason, reasons)).inc()


@_never_raises
def count_outbound_failure(channel: str, kind: str) -> None:
    """A response on ``channel`` (the output channel's own name) was not delivered: ``suppressed`` or ``failed``."""
    OUTBOUND_FAILURES.labels(channel_label(channel, running=True), bounded(kind, OUTBOUND_KINDS)).inc()


@_never_raises
def set_queue_depth(depth: Dict[str, int]) -> None:
    """The journey queue as ``store.queue_depth`` counted it."""
    for state in QUEUE_STATES:
        JOURNEY_QUEUE_DEPTH.labels(state).set(int(depth.get(state) or 0))


@_never_raises
def count_journey_send(channel: str, outcome: str) -> None:
    """A journey step's send on ``channel`` ended ``outcome`` (sent, suppressed, retry, failed)."""
    JOURNEY_SENDS.labels(channel_label(channel), bounded(outcome, JOURNEY_OUTCOMES)).inc()


# ----------------------------------------------------------- the exposition


def exposition(directory: Optional[Path] = None) -> bytes:
    """Every process's metrics, added up, in Prometheus's text format."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory or DIRECTORY))
    return generate_latest(registry)


_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_dead(directory: Path) -> List[str]:
    """Delete the metric files of processes that are gone (a stack's start); returns the names deleted.

    A new process could otherwise get a dead one's pid and carry on its counts.
    Files of live processes (another stack on the same directory) stay.
    """
    removed = []
    for path in sorted(Path(directory).glob("*.db")):
        match = _FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path.name)
    return removed


def mark_dead(pid: int, directory: Optional[Path] = None) -> None:
    """A process of the stack stopped: its live gauges go (its counters stay until the next start)."""
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(directory or DIRECTORY))
