"""Link codes in the connector pipeline: redeem under both conversations' locks, confirm where needed.

``intercept`` runs on every envelope after identification:

* ``LINK 123456`` (or Telegram's ``/start 123456``) redeems the code
  (``threadline.linking``) while holding the lock of the redeemer's
  conversation and of the code's customer's, so a merge never races a turn in
  flight. The bot then reads ``LINK 123456`` with the outcome in the message's
  ``link_result`` and says how it went (``action_confirm_link``).
* When the link must be confirmed on the customer's verified channel, that
  channel is asked ("Yes, connect it" / "No"); the answer is a button payload
  handled right here, before NLU, and the redeeming channel is told.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any, AsyncIterator, Iterable, Optional

from connectors import registry
from connectors.delivery import KIND_BUTTON, KIND_TEXT, Delivery, Envelope
from threadline import identity, linking
from threadline.message import LinkOutcome

logger = logging.getLogger(__name__)

LINK_CODE_RE = re.compile(r"^\s*(?:link|/start)\s+(\d{6})\s*$", re.IGNORECASE)
ANSWER_RE = re.compile(r"^(/link_confirm|/link_reject)\s*(\{.*\})\s*$")

ASK = ("Someone is asking to continue this conversation on {label}. If that's you, tap \"Yes, connect it\". "
       "If it isn't, tap \"No\" and nothing changes.")
CONFIRMED = "Done: {label} is now part of this conversation."
CONNECTED = "You're connected, and we can carry on right here."
REJECTED = "OK, I haven't connected anything."
NOT_CONFIRMED = "The request to connect wasn't confirmed, so nothing was linked."
EXPIRED = "That request has expired or was already answered, so nothing changed."


@contextlib.asynccontextmanager
async def conversation_locks(agent: Any, conversation_ids: Iterable[Optional[str]]) -> AsyncIterator[None]:
    """Hold the locks of several conversations (in a fixed order, so two merges never deadlock)."""
    store = getattr(agent, "lock_store", None)
    ids = sorted({cid for cid in conversation_ids if cid})
    if store is None or not ids:
        yield
        return
    async with contextlib.AsyncExitStack() as stack:
        for conversation_id in ids:
            await stack.enter_async_context(store.lock(conversation_id))
        yield


def _source(channel: Any, delivery: Delivery, envelope: Envelope) -> str:
    # Behind a platform's webhook every user shares the platform's address:
    # there the channel identity is the source.
    if envelope.channel in identity.ANONYMOUS_CHANNELS:
        return delivery.inbound.source
    return f"{envelope.channel}:{envelope.channel_user_id}"


async def intercept(channel: Any, delivery: Delivery, envelope: Envelope, turn: Any) -> Optional[str]:
    """Handle link codes and link confirmations; returns the customer id when nothing is left for the bot."""
    if envelope.kind == KIND_TEXT:
        match = LINK_CODE_RE.match(envelope.text or "")
        if match:
            await redeem(channel, delivery, envelope, turn, match.group(1))
        return None
    if envelope.kind == KIND_BUTTON and turn.text:
        answer = ANSWER_RE.match(turn.text)
        if answer:
            try:
                pending_id = str(json.loads(answer.group(2)).get("link") or "")
            except (ValueError, AttributeError):
                pending_id = ""
            await answer_confirmation(channel, delivery, envelope, turn, answer.group(1) == "/link_confirm", pending_id)
            return turn.customer_id
    return None


async def redeem(channel: Any, delivery: Delivery, envelope: Envelope, turn: Any, code: str) -> None:
    """Redeem ``code`` for the envelope's sender; updates ``turn`` in place."""
    app = delivery.inbound.app
    redis = channel.redis_client()
    into = await asyncio.to_thread(linking.peek, code, redis)
    async with conversation_locks(delivery.inbound.agent, [turn.customer_id, into]):
        result = await asyncio.to_thread(
            linking.redeem_link_code, code, envelope.channel, envelope.channel_user_id,
            redis, channel.tracker_store(app), _source(channel, delivery, envelope),
        )
    confirm_label = registry.channel_label(app, result.pending.confirm_channel) if result.pending else None
    turn.link_result = LinkOutcome(result.ok, result.reason, result.merged_from, result.pending is not None,
                                   confirm_label)
    turn.text = f"LINK {code}"
    if result.ok and result.customer_id:
        turn.customer_id = result.customer_id
        linked = await asyncio.to_thread(identity.channel_identity, envelope.channel, envelope.channel_user_id, redis)
        if linked is not None:
            turn.who = linked
    if result.pending is not None:
        await ask_confirmation(app, result.pending, registry.channel_label(app, envelope.channel))


async def ask_confirmation(app: Any, pending: linking.PendingLink, label: str) -> None:
    """Ask the customer on their verified channel whether the link is theirs."""
    output = registry.output_channel(app, pending.confirm_channel)
    if output is None:
        logger.warning("link %s: %s cannot send, so the link cannot be confirmed", pending.id, pending.confirm_channel)
        return
    await output.send_response(pending.into, {
        "text": ASK.format(label=label),
        "buttons": [{"title": "Yes, connect it", "payload": pending.confirm_payload},
                    {"title": "No", "payload": pending.reject_payload}],
    })


async def answer_confirmation(
    channel: Any, delivery: Delivery, envelope: Envelope, turn: Any, confirmed: bool, pending_id: str
) -> None:
    """The customer answered on their verified channel: link (or not) and tell both sides."""
    app = delivery.inbound.app
    redis = channel.redis_client()
    output = channel.output_channel_for(delivery, envelope)
    await asyncio.to_thread(channel.finish_identification, envelope, turn.customer_id)
    pending = await asyncio.to_thread(linking.take_pending, pending_id, envelope.channel, envelope.channel_user_id, redis)
    if pending is None:
        await output.send_response(turn.customer_id, {"text": EXPIRED})
        return
    redeemer = await asyncio.to_thread(identity.channel_identity, pending.channel, pending.channel_user_id, redis)
    other = registry.output_channel(app, pending.channel)
    if not confirmed:
        await output.send_response(turn.customer_id, {"text": REJECTED})
        if other is not None and redeemer is not None:
            await other.send_response(redeemer.customer_id, {"text": NOT_CONFIRMED})
        return
    async with conversation_locks(delivery.inbound.agent, [pending.into, redeemer.customer_id if redeemer else None]):
        await asyncio.to_thread(linking.complete, pending, redis, channel.tracker_store(app))
    await output.send_response(pending.into, {"text": CONFIRMED.format(label=registry.channel_label(app, pending.channel))})
    if other is not None:
        await other.send_response(pending.into, {"text": CONNECTED})
