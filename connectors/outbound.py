"""One outbound HTTP sender shared by every connector.

Platforms throttle (429) and fail (5xx, dropped connections). ``OutboundSender``
retries those with exponential backoff, waits at least as long as the platform
asks (``Retry-After`` header, or a hint the connector extracts from the body),
and gives up after a bounded number of attempts. A request that finally fails is
logged and appended to the Redis list ``threadline:outbound:failed``
(``THREADLINE_KEY_PREFIX`` replaces ``threadline``) so that an
operator can see and replay it: a customer's reply is never silently dropped.

Settings (environment, read when the sender is built):

- ``OUTBOUND_MAX_ATTEMPTS`` (default 4)
- ``OUTBOUND_RETRY_BASE_DELAY`` seconds (default 0.2; doubles per attempt)
- ``OUTBOUND_RETRY_MAX_DELAY`` seconds (default 30): the longest we wait between
  attempts. A ``Retry-After`` longer than this is not retried at all (we never
  call sooner than the platform allows, and we don't hold a webhook for minutes).
- ``OUTBOUND_TIMEOUT`` seconds per attempt (default 10)
"""
import asyncio
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional

import aiohttp

from threadline import settings

logger = logging.getLogger(__name__)



def redis_key(*parts: str) -> str:
    """A Redis key under ``THREADLINE_KEY_PREFIX`` (default ``threadline``)."""
    prefix = settings.env("THREADLINE_KEY_PREFIX", "threadline") or "threadline"
    return ":".join((prefix,) + tuple(str(part) for part in parts))


def failed_key() -> str:
    """The list of messages that could not be delivered: ``threadline:outbound:failed``."""
    return redis_key("outbound", "failed")


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


@dataclass
class _Attempt:
    status: Optional[int] = None
    body: Any = None
    retry_after: Optional[float] = None
    error: Optional[str] = None
    retryable: bool = False


@dataclass
class OutboundSender:
    """Posts JSON to a platform API with retries; records what finally fails.

    ``channel`` names the connector in logs and failure records. ``secrets`` are
    strings (bot tokens in URLs) masked in everything logged or stored.
    ``redis`` is a client or a zero-argument callable returning one; by default
    the shared client from ``threadline.redis_client``.
    """

    channel: str
    max_attempts: int = field(default_factory=lambda: int(settings.env("OUTBOUND_MAX_ATTEMPTS", "4")))
    base_delay: float = field(default_factory=lambda: float(settings.env("OUTBOUND_RETRY_BASE_DELAY", "0.2")))
    max_delay: float = field(default_factory=lambda: float(settings.env("OUTBOUND_RETRY_MAX_DELAY", "30")))
    timeout: float = field(default_factory=lambda: float(settings.env("OUTBOUND_TIMEOUT", "10")))
    secrets: Iterable[str] = ()
    retry_hint: Optional[RetryHint] = None
    redis: Any = None

    def __post_init__(self) -> None:
        self.max_attempts = max(1, int(self.max_attempts))
        self.secrets = [s for s in self.secrets if s]
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None

    async def post(
        self,
        url: str,
        body: Dict[str, Any],
        headers: Optional[Dict[str, str]] = None,
        *,
        record: bool = True,
    ) -> OutboundResult:
        """POST ``body`` as JSON to ``url``; retry what is worth retrying.

        Never raises for HTTP or network failures: the result says what happened,
        and a final failure has already been logged and stored, unless
        ``record`` is False (the caller has a fallback and records it itself).
        """
        last = _Attempt()
        for attempt in range(1, self.max_attempts + 1):
            last = await self._attempt(url, body, headers or {})
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
        result = OutboundResult(False, last.status, last.body, attempt, last.error)
        if record:
            await self.record_failure(url, body, result.error or "unknown error", status=last.status, attempts=attempt)
        return result

    async def record_failure(
        self, url: str, body: Any, error: str, *, status: Optional[int] = None, attempts: int = 0
    ) -> None:
        """Log a message that could not be delivered and keep it in Redis.

        Also used by connectors for messages they refuse to send (for example
        free text outside WhatsApp's customer-service window).
        """
        record = {
            "channel": self.channel,
            "url": self.redact(url),
            "body": body,
            "error": self.redact(error),
            "status": status,
            "attempts": attempts,
            "time": time.time(),
        }
        encoded = json.dumps(record, default=str)
        logger.error("%s outbound message failed for good: %s", self.channel, encoded)
        try:
            client = self._redis_client()
            await asyncio.to_thread(client.rpush, failed_key(), encoded)
        except Exception:  # Redis down too: the log line above is the record.
            logger.exception("could not store failed %s message in Redis", self.channel)

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

    def _redis_client(self) -> Any:
        if self.redis is None:
            from threadline.redis_client import get_client

            return get_client()
        return self.redis() if callable(self.redis) else self.redis

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # A session is bound to the loop it was made on; tests and tools may
            # drive one channel from several loops.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._session_loop = loop
        return self._session

    async def _attempt(self, url: str, body: Dict[str, Any], headers: Dict[str, str]) -> _Attempt:
        try:
            session = self._session_for_loop()
            async with session.post(url, json=body, headers=headers) as response:
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
                    retryable=response.status in RETRYABLE_STATUSES,
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return _Attempt(error=f"{type(exc).__name__}: {exc}", retryable=True)


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
