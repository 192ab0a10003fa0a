"""Call recording, only after the caller heard the notice: ``VOICE_RECORDING`` and ``VOICE_RECORDING_NOTICE``.

With ``VOICE_RECORDING=on`` the first answer to a call speaks the notice,
then starts the recording (Twilio's ``<Start><Recording/>``, after the
notice's ``<Say>``), then goes on as usual; the notice given is recorded in
the consent ledger for that call (purpose ``recording``, source ``notice``,
the call id as detail). No other answer starts a recording, so nothing is
recorded without the notice; with the setting off (the default) nothing is
recorded at all. jambonz calls are never recorded.
"""
from __future__ import annotations

import logging
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from threadline import consent, identity
from threadline import settings as settings_module

logger = logging.getLogger(__name__)


def enabled() -> bool:
    """Whether calls are recorded (after the notice)."""
    return (settings_module.get().get("VOICE_RECORDING") or "off").strip().lower() in ("on", "1", "true", "yes")


def notice() -> str:
    """What the caller hears before any recording starts."""
    return settings_module.get().get("VOICE_RECORDING_NOTICE") or ""


def first_answer(action_url: str) -> bool:
    """Whether ``action_url`` belongs to the first answer of a call (turn 1)."""
    return parse_qs(urlsplit(action_url or "").query).get("turn") == ["1"]


def starts_here(action_url: str) -> bool:
    """Whether this answer speaks the notice and starts the recording."""
    return enabled() and bool(notice()) and first_answer(action_url)


def record_notice(channel: str, channel_user_id: str, call_id: str, redis: Any = None) -> Optional[str]:
    """The caller heard the notice on ``call_id``: recorded per call in the ledger (blocking)."""
    known = identity.channel_identity(channel, channel_user_id, redis)
    if known is None:
        return None
    try:
        consent.record(known.customer_id, channel, consent.RECORDING, consent.GRANTED, consent.SOURCE_NOTICE,
                       call_id, redis)
    except Exception:
        logger.exception("%s call %s: could not record the recording notice", channel, call_id)
        return None
    return known.customer_id
