"""Consent in the connector pipeline: opt-out keywords before NLU, suppression at send time, platform signals.

``intercept`` runs on every envelope after identification (next to
``connectors.linking.intercept``): a whole-message STOP (and its variants,
see ``threadline.consent``), START/UNSTOP or HELP is recorded at once and
answered with exactly one confirmation; the message never reaches Rasa, so it
never becomes a task command. On voice the same words count when spoken, and
the keypad's ``*`` opts out.

``replying(customer, channel)`` marks the bot's replies to a message the
customer sent (the pipeline wraps the turn in it): those are service
messages and always go. Anything else an output channel sends (Rasa's
``trigger_intent``, an agent after a case closed, a replay, a journey) is the
bot writing on its own, and ``suppressed`` decides whether it may: consent
for its channel and purpose, and the channel's own window (WhatsApp's 24
hours). A suppressed send makes no provider call and is recorded, with its
reason, in the business database.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any, Dict, Iterator, Optional, Tuple

from connectors.delivery import KIND_TEXT, Delivery, Envelope
from threadline import consent, identity

logger = logging.getLogger(__name__)

KEYPAD_OPT_OUT = "*"

_replying: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar(
    "threadline_replying_to", default=None
)


@contextlib.contextmanager
def replying(customer_id: str, channel: str) -> Iterator[None]:
    """Sends to ``customer_id`` on ``channel`` inside this block answer the customer's own message."""
    token = _replying.set((customer_id, channel))
    try:
        yield
    finally:
        _replying.reset(token)


def is_reply(customer_id: str, channel: str) -> bool:
    """Whether a send to ``customer_id`` on ``channel`` answers the message being handled."""
    return _replying.get() == (customer_id, channel)


def keyword_of(envelope: Envelope, text: Optional[str]) -> Optional[consent.Keyword]:
    """The consent keyword a message is, if it is one (voice: spoken, or the keypad's ``*``)."""
    if envelope.kind != KIND_TEXT:
        return None
    if envelope.extra.get("input_mode") == "dtmf":
        digits = (envelope.extra.get("digits") or "").strip().rstrip("#")
        return consent.Keyword(consent.OPT_OUT, "KEYPAD") if digits == KEYPAD_OPT_OUT else None
    return consent.keyword(envelope.text if envelope.text is not None else text)


async def intercept(channel: Any, delivery: Delivery, envelope: Envelope, turn: Any) -> Optional[str]:
    """Handle a consent keyword; returns the customer id when nothing is left for the bot."""
    found = keyword_of(envelope, turn.text)
    if found is None:
        return None
    redis = channel.redis_client()
    customer_id = turn.customer_id
    others = []
    if found.all_channels:
        others = list((await asyncio.to_thread(identity.addresses, customer_id, redis)).keys())
    await asyncio.to_thread(consent.apply_keyword, found, customer_id, envelope.channel, others,
                            consent.SOURCE_KEYWORD, redis)
    await asyncio.to_thread(channel.finish_identification, envelope, customer_id)
    output = channel.output_channel_for(delivery, envelope)
    with replying(customer_id, channel.name()):
        await output.send_response(customer_id, {"text": consent.confirmation(found.kind, found.all_channels)})
    logger.info("%s: consent keyword %s from %s", channel.name(), found.word, customer_id)
    return customer_id


# ---------------------------------------------------------------- send time


async def suppressed(output: Any, recipient_id: str, message: Dict[str, Any]) -> Optional[str]:
    """Why a send the bot makes on its own must not go (None: it may); the suppression is recorded."""
    channel = output.name()
    if is_reply(recipient_id, channel):
        return None
    purpose = consent.purpose_of(message)
    window = await output.window_open(recipient_id)
    redis = output.redis_client()
    verdict = await asyncio.to_thread(consent.check, recipient_id, channel, purpose, window, redis)
    if verdict.allowed:
        return None
    if purpose == consent.SERVICE and await asyncio.to_thread(_with_an_agent, recipient_id):
        return None  # an agent answering the case the customer opened is a reply
    logger.info("%s: %s message to %s suppressed (%s)", channel, purpose, recipient_id, verdict.reason)
    try:
        from threadline.db import consent as ledger

        await asyncio.to_thread(ledger.record_suppressed, recipient_id, channel, purpose, verdict.reason)
    except Exception:  # the database is down: the log line above is the record
        logger.exception("could not record a suppressed %s send", channel)
    return verdict.reason


def _with_an_agent(customer_id: str) -> bool:
    try:
        from threadline.db import cases

        case = cases.open_case_for(customer_id)
    except Exception:
        return False
    return case is not None and case.status == "accepted"


_SUPPRESSION_TEXT = {
    consent.OPTED_OUT_REASON: "the customer opted out of messages on this channel",
    consent.NO_MARKETING_REASON: "the customer has not agreed to marketing messages",
    consent.OUTSIDE_WINDOW_REASON: "the channel only allows replies within 24 hours of the customer's last message",
}


def describe_failure(error: str) -> str:
    """An error of a ``SendReport`` as an agent reads it (suppressions in words)."""
    if error.startswith("suppressed: "):
        reason = error[len("suppressed: "):]
        return _SUPPRESSION_TEXT.get(reason, f"suppressed ({reason})")
    return error


def without_purpose(message: Dict[str, Any]) -> Dict[str, Any]:
    """The message without its ``purpose`` marker (not something to show the platform)."""
    custom = message.get("custom")
    if isinstance(custom, dict) and "purpose" in custom:
        message = dict(message)
        rest = {k: v for k, v in custom.items() if k != "purpose"}
        if rest:
            message["custom"] = rest
        else:
            message.pop("custom")
    return message


# ----------------------------------------------------------- platform signals


def platform_opt_out(channel: str, channel_user_id: str, signal: str, redis: Any = None,
                     purposes: Tuple[str, ...] = (consent.SERVICE, consent.MARKETING)) -> Optional[str]:
    """A platform says the user wants nothing more from us here; returns the customer id (blocking)."""
    known = identity.channel_identity(channel, channel_user_id, redis)
    if known is None:
        logger.info("%s: %s for an unknown user ignored", channel, signal)
        return None
    for purpose in purposes:
        consent.record(known.customer_id, channel, purpose, consent.REVOKED, consent.SOURCE_PLATFORM, signal, redis)
    logger.info("%s: %s recorded for %s", channel, signal, known.customer_id)
    return known.customer_id


def platform_opt_in(channel: str, channel_user_id: str, signal: str, redis: Any = None,
                    purpose: str = consent.SERVICE) -> Optional[str]:
    """A platform says the user is reachable again (blocking)."""
    known = identity.channel_identity(channel, channel_user_id, redis)
    if known is None:
        return None
    consent.record(known.customer_id, channel, purpose, consent.GRANTED, consent.SOURCE_PLATFORM, signal, redis)
    return known.customer_id
