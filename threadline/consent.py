"""Consent: what the customer agreed to be sent, per channel and purpose, and the rules that follow.

Purposes: ``service`` (what the bot or an agent sends on its own about the
customer's business: a reminder, an agent's answer after a case closed),
``marketing``, and ``recording`` (of a call). The ledger is in the business
database (``threadline.db.consent``); this module holds the rules:

* **Opt-out keywords** (a whole message, case, spaces and punctuation folded):
  STOP, STOPALL, UNSUBSCRIBE, END, QUIT, REVOKE, OPTOUT, CANCEL revoke
  ``service`` and ``marketing`` on the channel they were sent on (STOPALL on
  every channel of the customer); START and UNSTOP grant ``service`` again
  (marketing needs its own opt-in); HELP answers how it works. The
  ``opt_out`` intent ("please stop texting me") does what STOP does.
* **Platform signals**: WhatsApp's ``user_preferences`` (marketing stop and
  resume), Telegram's ``my_chat_member`` (kicked / member again) and a 403
  "blocked" answer from Telegram's ``sendMessage``.
* **The projection** senders read is a Redis hash per customer
  (``{p}:consent:{customer}``), written right after each ledger row and
  rebuildable from the ledger (``rebuild_projection``).
* **At send time** (``check``), for a message the bot or an agent sends on
  its own: nothing goes to a channel whose ``service`` consent is revoked;
  marketing needs a ``marketing`` grant on that channel and, on WhatsApp, an
  open 24-hour window (the follow-up template outside it is a utility
  template). Replies inside a conversation the customer started are service
  messages and always go.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from threadline import settings as settings_module

logger = logging.getLogger(__name__)

SERVICE = "service"
MARKETING = "marketing"
RECORDING = "recording"
PURPOSES = (SERVICE, MARKETING, RECORDING)

GRANTED = "granted"
REVOKED = "revoked"

SOURCE_KEYWORD = "keyword"
SOURCE_INTENT = "intent"
SOURCE_PLATFORM = "platform_signal"
SOURCE_OPERATOR = "operator"
SOURCE_NOTICE = "notice"

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP"})
ALL_CHANNELS_KEYWORDS = frozenset({"STOPALL"})

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"

# Confirmations are service messages: no offer, no marketing, one each.
OPTED_OUT_TEXT = ("You're unsubscribed: we won't send you messages here any more, only answers when you "
                  "write to us. Send START to subscribe again.")
OPTED_OUT_ALL_TEXT = ("You're unsubscribed everywhere: we won't send you messages on any channel any more, "
                      "only answers when you write to us. Send START to subscribe again.")
OPTED_IN_TEXT = "You're subscribed again: we'll keep you posted here. Send STOP at any time to unsubscribe."
HELP_TEXT = ("Send STOP to stop our messages here, START to get them again. For anything else, just tell me "
             "what you need.")

# Why a send was suppressed (kept in ``suppressed_sends``).
OPTED_OUT_REASON = "opted_out"
NO_MARKETING_REASON = "no_marketing_consent"
OUTSIDE_WINDOW_REASON = "outside_window"

_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def wording_version() -> str:
    """The version of the wording customers were shown (``CONSENT_WORDING_VERSION``)."""
    return settings_module.get().get("CONSENT_WORDING_VERSION") or "unversioned"


def fold(text: Optional[str]) -> str:
    """``text`` upper-cased without spaces and punctuation: "Stop!" and "opt-out" become STOP and OPTOUT."""
    if not text:
        return ""
    normal = unicodedata.normalize("NFKC", text)
    return _FOLD.sub("", normal).upper()


@dataclass(frozen=True)
class Keyword:
    """A consent keyword found in a whole message."""

    kind: str  # opt_out | opt_in | help
    word: str  # the folded keyword

    @property
    def all_channels(self) -> bool:
        """Whether it applies to every channel of the customer (STOPALL)."""
        return self.word in ALL_CHANNELS_KEYWORDS


def keyword(text: Optional[str]) -> Optional[Keyword]:
    """The consent keyword ``text`` is, as a whole message, or None.

    A platform command ("/start" on Telegram) is not a keyword, and neither is
    anything with more words ("stop my cancellation").
    """
    if not text or len(text) > 40 or text.lstrip().startswith("/"):
        return None
    word = fold(text)
    if word in OPT_OUT_KEYWORDS:
        return Keyword(OPT_OUT, word)
    if word in OPT_IN_KEYWORDS:
        return Keyword(OPT_IN, word)
    if word in HELP_KEYWORDS:
        return Keyword(HELP, word)
    return None


def confirmation(kind: str, all_channels: bool = False) -> str:
    """The one confirmation of an opt-out, opt-in or help request."""
    if kind == OPT_OUT:
        return OPTED_OUT_ALL_TEXT if all_channels else OPTED_OUT_TEXT
    if kind == OPT_IN:
        return OPTED_IN_TEXT
    return HELP_TEXT


# ------------------------------------------------------------------- changes


def _redis(redis: Any) -> Any:
    from threadline import redis_client

    return redis if redis is not None else redis_client.get_client()


def record(customer_ref: str, channel: str, purpose: str, state: str, source: str,
           detail: Optional[str] = None, redis: Any = None) -> None:
    """Append one change to the ledger, then update the projection senders read (blocking).

    The ledger row comes first: if the database is down this raises and the
    change is not half-made (the pipeline answers the platform 503, and its
    retry records it).
    """
    from threadline.db import consent as ledger
    from threadline.keys import Keys

    if purpose not in PURPOSES or state not in (GRANTED, REVOKED):
        raise ValueError(f"unknown purpose or state: {purpose!r} {state!r}")
    ledger.record(customer_ref, channel, purpose, state, source, wording_version(), detail)
    _redis(redis).hset(Keys().consent(customer_ref), f"{channel}:{purpose}", state)


def revoke_channel(customer_ref: str, channel: str, source: str, detail: Optional[str] = None,
                   redis: Any = None) -> None:
    """The customer wants nothing more on ``channel``: service and marketing revoked (blocking)."""
    for purpose in (SERVICE, MARKETING):
        record(customer_ref, channel, purpose, REVOKED, source, detail, redis)
    logger.info("consent: %s revoked on %s (%s)", customer_ref, channel, source)


def grant_channel(customer_ref: str, channel: str, source: str, detail: Optional[str] = None,
                  redis: Any = None) -> None:
    """The customer wants our messages on ``channel`` again (service; marketing needs its own opt-in)."""
    record(customer_ref, channel, SERVICE, GRANTED, source, detail, redis)
    logger.info("consent: %s granted on %s (%s)", customer_ref, channel, source)


def states(customer_ref: str, redis: Any = None) -> Dict[Tuple[str, str], str]:
    """The current state per (channel, purpose), from the projection."""
    from threadline.keys import Keys

    found = {}
    for name, value in _redis(redis).hgetall(Keys().consent(customer_ref)).items():
        name = name.decode() if isinstance(name, bytes) else name
        channel, _, purpose = name.rpartition(":")
        found[(channel, purpose)] = value.decode() if isinstance(value, bytes) else value
    return found


def rebuild_projection(customer_ref: str, redis: Any = None) -> Dict[Tuple[str, str], str]:
    """Rewrite the customer's projection from the ledger (the ledger is the truth)."""
    from threadline.db import consent as ledger
    from threadline.keys import Keys

    current = ledger.current(customer_ref)
    r = _redis(redis)
    pipe = r.pipeline(transaction=True)
    pipe.delete(Keys().consent(customer_ref))
    if current:
        pipe.hset(Keys().consent(customer_ref), mapping={f"{c}:{p}": s for (c, p), s in current.items()})
    pipe.execute()
    return current


def apply_keyword(found: Keyword, customer_ref: str, channel: str, channels: Iterable[str] = (),
                  source: str = SOURCE_KEYWORD, redis: Any = None) -> List[str]:
    """Record what a keyword (or the ``opt_out`` intent) means; returns the channels it changed (blocking)."""
    if found.kind == HELP:
        return []
    targets = sorted({channel, *channels}) if found.all_channels else [channel]
    for target in targets:
        if found.kind == OPT_OUT:
            revoke_channel(customer_ref, target, source, found.word, redis)
        else:
            grant_channel(customer_ref, target, source, found.word, redis)
    return targets


# ------------------------------------------------------------------ send time


@dataclass(frozen=True)
class Verdict:
    """Whether a message the bot sends on its own may go, and if not, why."""

    allowed: bool
    reason: Optional[str] = None


ALLOWED = Verdict(True)


def decide(states: Dict[Tuple[str, str], str], channel: str, purpose: str,
           window_open: Optional[bool] = None) -> Verdict:
    """The rule, on the current states of one channel (``threadline.db.consent.current``)."""
    if states.get((channel, SERVICE)) == REVOKED:
        return Verdict(False, OPTED_OUT_REASON)
    if purpose == MARKETING:
        if states.get((channel, MARKETING)) != GRANTED:
            return Verdict(False, NO_MARKETING_REASON)
        if window_open is False:
            return Verdict(False, OUTSIDE_WINDOW_REASON)
    return ALLOWED


def check(customer_ref: str, channel: str, purpose: str = SERVICE, window_open: Optional[bool] = None,
          redis: Any = None) -> Verdict:
    """May a message of ``purpose`` the bot sends on its own go to the customer on ``channel``? (blocking)"""
    return decide(states(customer_ref, redis), channel, purpose, window_open)


def purpose_of(message: Dict[str, Any]) -> str:
    """The purpose a bot message declares (``{"custom": {"purpose": "marketing"}}``), else service."""
    custom = message.get("custom") if isinstance(message, dict) else None
    declared = custom.get("purpose") if isinstance(custom, dict) else None
    return declared if declared in (SERVICE, MARKETING) else SERVICE
