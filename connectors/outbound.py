"""One outbound HTTP sender shared by every connector, and the record of what failed.

Platforms throttle (429) and fail (5xx, dropped connections). ``OutboundSender``
retries those with exponential backoff, waits at least as long as the platform
asks (``Retry-After`` header, or a hint the connector extracts from the body),
and gives up after a bounded number of attempts (``OUTBOUND_*`` settings).

It never stores anything itself: a request that finally fails is reported to
the send in progress (``SendReport``), and ``ThreadlineOutput.send_response``
keeps the undelivered *response* in ``threadline.outbound_failures`` (the
channel, the customer id and the channel-neutral message; no address, no
platform body), from where ``make replay-failed`` sends it again once.
"""
import asyncio
import contextvars
import email.utils
import functools
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional

import aiohttp

from threadline import settings as settings_module
from threadline import tracing

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Extracts a platform-specific retry hint (seconds) from a parsed error body.
RetryHint = Callable[[Any], Optional[float]]


@dataclass
class OutboundResult:
    """What happened to one outbound request after all attempts."""

    ok: bool
    status: Optional[int] = None
    json: Any = None
    attempts: int = 0
    error: Optional[str] = None
    retry_after: Optional[float] = None  # seconds the platform asked to wait (``Retry-After``), on a failure


@dataclass
class SendReport:
    """What went wrong while one bot response was being sent (empty: delivered)."""

    errors: List[str] = field(default_factory=list)
    statuses: List[Optional[int]] = field(default_factory=list)
    requests: int = 0
    queued: Optional[str] = None  # not failed, but waiting (why), e.g. for a web visitor to come back
    retry_after: Optional[float] = None  # the platform asked us to wait this long (seconds) before trying again

    @property
    def ok(self) -> bool:
        """Whether every request of the response went through."""
        return not self.errors

    def fail(self, error: str, status: Optional[int] = None) -> None:
        """Note one failure."""
        self.errors.append(error)
        self.statuses.append(status)


_report: contextvars.ContextVar = contextvars.ContextVar("threadline_send_report", default=None)


def current_report() -> Optional[SendReport]:
    """The report of the response being sent in this task, if any."""
    return _report.get()


def start_report() -> "tuple":
    """Begin collecting failures for one response; returns (report, token)."""
    report = SendReport()
    return report, _report.set(report)


def end_report(token: Any) -> None:
    """Stop collecting (pairs with ``start_report``)."""
    _report.reset(token)


def note_failure(error: str, status: Optional[int] = None) -> None:
    """Report a failure to the response being sent (logged either way)."""
    report = _report.get()
    if report is not None:
        report.fail(error, status)
    else:
        logger.warning("outbound request failed outside a response: %s", error)


@dataclass
class _Attempt:
    status: Optional[int] = None
    body: Any = None
    retry_after: Optional[float] = None
    error: Optional[str] = None
    retryable: bool = False


def _setting(name: str, kind: Callable[[str], Any]) -> Callable[[], Any]:
    return lambda: kind(settings_module.get().get(name))


def _traced(post: Callable[..., Any]) -> Callable[..., Any]:
    """``post`` in a ``threadline.outbound`` client span: channel, status, attempts (never the URL or body)."""

    @functools.wraps(post)
    async def wrapper(self: "OutboundSender", *args: Any, **kwargs: Any) -> "OutboundResult":
        if not tracing.enabled():
            return await post(self, *args, **kwargs)
        with tracing.span("threadline.outbound", {tracing.CHANNEL: self.channel}, kind="client") as span:
            result = await post(self, *args, **kwargs)
            span.set_attribute("threadline.attempts", result.attempts)
            span.set_attribute("threadline.delivered", result.ok)
            if result.status is not None:
                span.set_attribute("http.response.status_code", result.status)
            return result

    return wrapper


@dataclass
class OutboundSender:
    """Posts JSON (or a form) to a platform API with retries.

    ``channel`` names the connector in logs. ``secrets`` are strings (bot
    tokens in URLs) masked in everything logged. ``retry_statuses`` and
    ``retry_network_errors`` narrow what is retried for requests that must
    not be repeated blindly (placing a phone call: a 500 or a timeout may
    mean the call was placed anyway); by default every ``RETRYABLE_STATUSES``
    answer and every network error is retried.
    """

    channel: str
    max_attempts: int = field(default_factory=_setting("OUTBOUND_MAX_ATTEMPTS", int))
    base_delay: float = field(default_factory=_setting("OUTBOUND_RETRY_BASE_DELAY", float))
    max_delay: float = field(default_factory=_setting("OUTBOUND_RETRY_MAX_DELAY", float))
    timeout: float = field(default_factory=_setting("OUTBOUND_TIMEOUT", float))
    secrets: Iterable[str] = ()
    retry_hint: Optional[RetryHint] = None
    redis: Any = None  # kept for callers that pass one; the sender stores nothing
    retry_statuses: FrozenSet[int] = RETRYABLE_STATUSES
    retry_network_errors: bool = True  # False: only a connection that was never made is retried

    def __post_init__(self) -> None:
        self.max_attempts = max(1, int(self.max_attempts))
        self.secrets = [s for s in self.secrets if s]
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None

    @_traced
    async def post(
        self,
        url: str,
        body: Dict[str, Any],
        headers: Optional[Dict[str, str]] = None,
        *,
        record: bool = True,
        form: bool = False,
    ) -> OutboundResult:
        """POST ``body`` as JSON to ``url``; retry what is worth retrying.

        With ``form``, ``body`` (a mapping, or a list of name/value pairs for
        repeated names) is sent form-encoded instead. Never raises for HTTP
        or network failures: the result says what happened, and a final
        failure is reported to the response being sent, unless ``record`` is
        False (the caller has a fallback).
        """
        report = current_report()
        if report is not None:
            report.requests += 1
        last = _Attempt()
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            last = await self._attempt(url, body, headers or {}, form=form)
            if last.error is None:
                return OutboundResult(True, last.status, last.body, attempt)
            if not last.retryable or attempt == self.max_attempts:
                break
            delay = self._backoff(attempt)
            if last.retry_after is not None:
                if last.retry_after > self.max_delay:
                    last.error += f" (platform asked to wait {last.retry_after:g}s; not retried)"
                    break
                delay = max(delay, last.retry_after)
            logger.warning(
                "%s outbound attempt %d/%d to %s failed (%s); retrying in %.2fs",
                self.channel, attempt, self.max_attempts, self.redact(url), last.error, delay,
            )
            await asyncio.sleep(delay)
        result = OutboundResult(False, last.status, last.body, attempt, self.redact(last.error or "unknown error"),
                                last.retry_after)
        logger.error("%s outbound request to %s failed for good after %d attempt(s): %s",
                     self.channel, self.redact(url), attempt, result.error)
        if record:
            note_failure(result.error, result.status)
            if report is not None and last.retry_after is not None:
                report.retry_after = last.retry_after
        return result

    def redact(self, text: str) -> str:
        """``text`` with every configured secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    async def close(self) -> None:
        """Close the HTTP session (connections are pooled per event loop)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _backoff(self, attempt: int) -> float:
        delay = self.base_delay * (2 ** (attempt - 1))
        # A little jitter so that many conversations throttled together spread out.
        return min(self.max_delay, delay * (1 + random.random() * 0.1))

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # A session is bound to the loop it was made on; tests and tools may
            # drive one channel from several loops.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._session_loop = loop
        return self._session

    async def _attempt(self, url: str, body: Any, headers: Dict[str, str], form: bool = False) -> _Attempt:
        try:
            session = self._session_for_loop()
            payload = {"data": body} if form else {"json": body}
            async with session.post(url, headers=headers, **payload) as response:
                raw = await response.read()
                parsed = _json_or_text(raw)
                if response.status < 300:
                    return _Attempt(status=response.status, body=parsed)
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None and self.retry_hint is not None:
                    retry_after = self.retry_hint(parsed)
                return _Attempt(
                    status=response.status,
                    body=parsed,
                    retry_after=retry_after,
                    error=f"HTTP {response.status}: {_snippet(raw)}",
                    retryable=response.status in self.retry_statuses,
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            unsent = isinstance(exc, aiohttp.ClientConnectorError)  # never reached the platform
            return _Attempt(error=f"{type(exc).__name__}: {exc}", retryable=self.retry_network_errors or unsent)


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _snippet(raw: bytes, limit: int = 300) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
