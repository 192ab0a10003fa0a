"""Personal data at ingestion: every inbound message is masked before a ``UserMessage`` exists.

``mask_envelope`` runs in the pipeline after identification (so vault tokens
belong to the customer) and before anything is forwarded: the text Rasa reads
and the envelope's own text and extras get typed placeholders, emails and
phone numbers vault tokens (``threadline.pii``). From there on the tracker,
the event broker, the desk, logs and the failed-send store only ever see
what was masked. Voice transcripts are envelopes like any other text; a
button's payload, the bot's own words, is read as it was sent.
"""
from __future__ import annotations

from typing import Any

from connectors.delivery import KIND_BUTTON, Envelope
from threadline import pii

# Extras that are identifiers of our own, never the customer's words.
_KEEP = frozenset({"call_sid", "type", "platform_timestamp", "reply_to", "input_mode", "digits", "channel_label",
                   "voice_event", "whatsapp_user_id", "chosen_payload", "chosen_option"})

# The benchmark switches masking off to time the same turn without it; nothing else does.
ENABLED = True


def mask_envelope(envelope: Envelope, turn: Any, redis: Any) -> None:
    """Mask ``turn.text``, the envelope's text and its free-text extras in place (blocking)."""
    if not ENABLED:
        return
    masked_text = None
    # A button's payload is the bot's own (an offered payload, or an alias the
    # bot stored): it is read as sent; the button's title is masked below.
    if turn.text and envelope.kind != KIND_BUTTON:
        masked_text = pii.mask(turn.text, turn.customer_id, redis=redis)
        turn.text = masked_text.text
    if envelope.text:
        if masked_text is not None and envelope.text == masked_text.text:
            pass
        else:
            envelope.text = pii.mask(envelope.text, turn.customer_id, redis=redis).text
    for key, value in list(envelope.extra.items()):
        if key not in _KEEP and isinstance(value, (str, dict, list)):
            envelope.extra[key] = pii.scrub_value(value)

