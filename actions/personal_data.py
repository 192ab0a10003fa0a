"""Vault tokens in fulfillment: the one place actions turn a token back into the value it stands for.

Emails and phone numbers reach the action server as tokens (the connector
pipeline masked them, ``threadline.pii``). ``reveal`` gives the raw value for
what needs it (writing a booking's contact email, a callback), audited per
lookup in the business database; anything that is not a token is returned as
it is. ``shown`` is how a value may appear in a message ("j***@example.com"):
the bot's output never carries the raw value.
"""
from typing import Any, Optional

from rasa_sdk import Tracker

from threadline import pii, vault


def reveal(value: Any, tracker: Tracker, purpose: str) -> Optional[str]:
    """The raw value behind ``value`` if it is a token (None if it expired or was erased), else ``value``."""
    if value is None:
        return None
    text = str(value)
    ident = pii.token_id(text)
    if ident is None:
        return text
    return vault.resolve(ident, actor=f"action_server:{purpose}", purpose=purpose, customer_ref=tracker.sender_id)


def shown(value: Any, tracker: Tracker) -> str:
    """A hint of the value for a message to its owner: "r…@example.org" (not an address, so no filter takes it)."""
    raw = reveal(value, tracker, "display") if value is not None else None
    if not raw:
        return "the address you gave"
    local, at, domain = raw.partition("@")
    if at:
        return f"{local[:1]}…@{domain}"
    digits = [ch for ch in raw if ch.isdigit()]
    return "***" + "".join(digits[-2:]) if digits else "***"
