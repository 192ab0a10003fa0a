"""Who wrote an envelope: the customer, the business customer they are proven to be, the signed metadata.

``who_wrote`` resolves the channel identity (``threadline.identity``) and the
owner (``threadline.ownership``: a verified phone or signed web identity, or
one a confirmed link carried over); ``turn_metadata`` writes the reserved
metadata (``threadline.message.TurnMetadata``), signed, then the channel's
extras, which can never set a reserved key.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional

from connectors import registry
from connectors.delivery import Delivery, Envelope
from threadline import identity, ownership
from threadline import linking as linking_state
from threadline.message import RESERVED_KEYS, LinkOutcome, Origin, Trust, TurnMetadata


@dataclass
class Turn:
    """Who wrote one envelope, as the pipeline established it."""

    customer_id: str
    who: identity.Identity
    owner: Optional[int]
    text: Optional[str]
    previous_channel: Optional[str] = None
    link_result: Optional[LinkOutcome] = None
    source: Optional[str] = None


def who_wrote(channel: Any, delivery: Delivery, envelope: Envelope) -> Turn:
    """Resolve the customer and the business customer they are proven to be (blocking)."""
    redis = channel.redis_client()
    who = identity.resolve(
        envelope.channel,
        envelope.channel_user_id,
        phone=envelope.phone,
        verified_phone=envelope.phone_verified,
        signed_customer_id=envelope.signed_customer_id,
        signature=envelope.signature,
        signature_expires=envelope.signature_expires,
        redis=redis,
    )
    owner = owner_of(envelope, who, redis)
    text = channel.message_text(envelope, who.customer_id) if envelope.readable else None
    return Turn(who.customer_id, who, owner, text, source=source_of(delivery, envelope))


def source_of(delivery: Delivery, envelope: Envelope) -> str:
    """Where a message came from, for failure budgets, as an opaque hash.

    Behind a platform's webhook every user shares the platform's address,
    so there the channel identity is the source; on the web, the client's.
    """
    if envelope.channel in identity.ANONYMOUS_CHANNELS:
        return identity.identity_hash("source", delivery.inbound.source)
    return identity.identity_hash(envelope.channel, envelope.channel_user_id)


def owner_of(envelope: Envelope, who: identity.Identity, redis: Any) -> Optional[int]:
    """The business customer this message proves its sender to be, if any."""
    if who.trust != Trust.VERIFIED.value:
        return None
    owner_key = linking_state.owner_key(envelope.channel, envelope.channel_user_id)
    if envelope.phone and envelope.phone_verified:
        raw = envelope.phone.strip()
        e164 = identity.normalise_phone("+" + raw if raw.isdigit() else raw)
        owner = ownership.owner_for(phone=e164, redis=redis) if e164 else None
        redis.set(owner_key, str(owner or 0))  # a Telegram contact proves it once for later messages
        return owner
    if envelope.signed_customer_id and envelope.channel in identity.ANONYMOUS_CHANNELS:
        return ownership.owner_for(web_ref=envelope.signed_customer_id, redis=redis)
    remembered = redis.get(owner_key)
    return (int(remembered) or None) if remembered else None


def turn_metadata(channel: Any, envelope: Envelope, turn: Turn, trace_id: str, app: Any = None) -> Dict[str, Any]:
    """The message's metadata: the signed reserved part, then the channel's extras."""
    extra = dict(envelope.extra)
    previous_label = registry.channel_label(app, turn.previous_channel) if turn.previous_channel else None
    typed = TurnMetadata(
        channel=envelope.channel,
        channel_user_id=envelope.channel_user_id,
        message_id=envelope.message_id,
        trace_id=trace_id,
        trust=Trust.parse(turn.who.trust),
        origin=Origin(turn.who.origin) if turn.who.origin in Origin._value2member_map_ else Origin.CREATED,
        identity=identity.identity_hash(envelope.channel, envelope.channel_user_id),
        source=turn.source,
        owner=turn.owner,
        channel_label=extra.pop("channel_label", None) or channel.channel_label
        or envelope.channel.replace("_", " ").title(),
        previous_channel=turn.previous_channel,
        previous_channel_label=previous_label,
        is_new_customer=turn.who.is_new,
        kind=envelope.kind,
        locale=envelope.locale,
        profile_name=envelope.profile_name,
        link_result=turn.link_result,
        call_sid=extra.pop("call_sid", None),
    )
    metadata = typed.to_metadata(channel.settings.secret("metadata_key"))
    for key, value in extra.items():
        if key not in RESERVED_KEYS:
            metadata[key] = value
    return metadata
