"""The base of every Threadline output channel: addressing from the identity index, failure records.

The recipient Rasa passes is the conversation id, i.e. the customer id; it is
mapped to the customer's address on the channel through the identity index
only. A response that does not reach the customer is reported
(``last_report``) and kept for ``make replay-failed``. A response the bot
sends on its own (not a reply to the customer's message) is first checked
against the customer's consent (``connectors.consent.suppressed``).
"""
import asyncio
import copy
import logging
from typing import Any, Dict, Optional

from rasa.core.channels.channel import OutputChannel

from connectors import consent
from connectors.outbound import OutboundSender, SendReport, end_report, start_report
from threadline import identity, metrics, outbound_failures, tracing
from threadline.message import is_internal_note, only_for_channel

logger = logging.getLogger(__name__)


async def run_sync(function, *args, **kwargs):
    """Run a blocking call (Redis, identity, the database) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def _redis():
    from threadline.redis_client import get_client

    return get_client()


class NoAddress(Exception):
    """The customer has no address on this channel (the identity index has none)."""


class ThreadlineOutput(OutputChannel):
    """Base output channel: addressing, channel checks, internal notes, failure records.

    The recipient Rasa passes is the conversation id, i.e. the customer id; it
    is mapped to the customer's address on this channel through the identity
    index only (for replies and proactive messages alike). A customer with no
    address here is not sent anything, and that is recorded, like any
    response that could not be delivered (``threadline.outbound_failures``).
    ``last_report`` says how the latest response went.
    """

    channel: str = ""
    # Whether it can reach the customer on its own, outside a webhook's answer
    # (a phone call's output only collects the reply to the current turn).
    pushes: bool = True
    # Whether an undelivered response is kept for ``make replay-failed`` (a
    # journey retries its own steps, so it turns this off).
    keep_undelivered: bool = True

    def __init__(self, config: Dict[str, str], sender: OutboundSender, redis: Any = None) -> None:
        self.config = config
        self.sender = sender
        self._redis = redis
        self.last_report = None

    @classmethod
    def name(cls) -> str:
        """Same name as the input channel, as Rasa's trigger_intent API expects."""
        return cls.channel or super().name()

    def redis_client(self) -> Any:
        """The Redis client (the shared one unless one was injected)."""
        return self._redis if self._redis is not None else _redis()

    async def address(self, recipient_id: str) -> str:
        """The platform address of the customer ``recipient_id`` on this channel.

        Raises ``NoAddress`` when the identity index has none: an address is
        never guessed from a conversation id.
        """
        found = await run_sync(identity.address_for, recipient_id, self.name(), self.redis_client())
        if not found:
            raise NoAddress(f"the customer has no {self.name()} address")
        return found

    async def window_open(self, recipient_id: str) -> Optional[bool]:
        """Whether the platform lets the bot write first right now (None: it has no such window)."""
        return None

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        """Send one bot response, unless it is an internal note or meant for another channel.

        Whatever fails on the way is reported (``last_report``) and the
        response is kept for replay; nothing raises to Rasa's processor.
        """
        custom = message.get("custom")
        if is_internal_note(custom):
            logger.debug("%s: internal note not sent to the customer", self.name())
            return
        target = only_for_channel(custom)
        if target and target != self.name():
            return
        reason = await consent.suppressed(self, recipient_id, message)
        message = consent.without_purpose(message)
        if reason is not None:
            self.last_report = SendReport(errors=[f"suppressed: {reason}"])
            metrics.count_outbound_failure(self.name(), "suppressed")
            return
        original = copy.deepcopy(message)  # Rasa's dispatch pops keys off the message
        report, token = start_report()
        with tracing.span("threadline.send", {tracing.CHANNEL: self.name()}) as span:
            try:
                await super().send_response(recipient_id, message)
            except NoAddress as missing:
                report.fail(str(missing))
            finally:
                end_report(token)
            span.set_attribute("threadline.delivered", report.ok)
        self.last_report = report
        if not report.ok:
            metrics.count_outbound_failure(self.name(), "failed")
        if not report.ok and self.keep_undelivered:
            await self.record_undelivered(recipient_id, original, "; ".join(report.errors))

    async def record_undelivered(self, recipient_id: str, message: Dict[str, Any], error: str) -> None:
        """Keep a response that did not reach the customer (replayed by ``make replay-failed``)."""
        logger.error("%s: a response to %s was not delivered: %s", self.name(), recipient_id, error)
        try:
            await run_sync(outbound_failures.record, self.name(), recipient_id, message, error,
                           redis=self.redis_client())
        except Exception:  # Redis down too: the log line above is the record.
            logger.exception("could not keep the undelivered %s message", self.name())
