"""The contract between the two rooms: typed message metadata, trust, and shared payloads.

The connector pipeline (``connectors/base.py``) is the only writer of
``TurnMetadata``; fulfillment (``actions/``) reads it back with
``TurnMetadata.read`` and nothing else. The reserved keys are the dataclass's
fields (``RESERVED_KEYS``), set on every ``UserUttered`` together with a
signature (``SIGNATURE_KEY``): HMAC-SHA256 of the reserved part under the
metadata key (``settings.secret("metadata_key")``). A message whose reserved
part is missing, altered or unsigned (Rasa's stock channels, the HTTP API, a
forged tracker) reads as an anonymous message from no channel, so nothing a
client sends can raise its own trust.

Payloads both rooms exchange travel as custom bot responses and are typed
here too: ``HandoffSignal`` (the bot handed over; a voice call may transfer)
and ``InternalNote`` (for the desk only).
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, FrozenSet, Mapping, Optional

SIGNATURE_KEY = "threadline_sig"


class Trust(str, enum.Enum):
    """How sure we are who wrote a message, weakest first.

    ``anonymous``: nobody vouches for the sender (a web visitor, a caller id
    that is withheld). ``low``: a claimed identifier (a voice caller id, a
    Telegram account not yet tied to a business customer). ``verified``: the
    platform proves an identifier (a WhatsApp ``wa_id``, a Telegram contact of
    the user's own, a web identity signed by the website).
    """

    ANONYMOUS = "anonymous"
    LOW = "low"
    VERIFIED = "verified"

    @property
    def rank(self) -> int:
        """0, 1, 2: comparable strength."""
        return _RANK[self]

    def at_least(self, other: "Trust") -> bool:
        """Whether this trust is ``other`` or stronger."""
        return self.rank >= Trust(other).rank

    @classmethod
    def parse(cls, value: Any) -> "Trust":
        """``value`` as a trust level; anything unknown is anonymous."""
        try:
            return cls(value)
        except ValueError:
            return cls.ANONYMOUS

    @classmethod
    def strongest(cls, *levels: Any) -> "Trust":
        """The strongest of ``levels`` (unknown ones count as anonymous)."""
        return max((cls.parse(level) for level in levels), key=lambda t: t.rank, default=cls.ANONYMOUS)


_RANK = {Trust.ANONYMOUS: 0, Trust.LOW: 1, Trust.VERIFIED: 2}
TRUST_LEVELS = tuple(level.value for level in Trust)


class Origin(str, enum.Enum):
    """How a channel identity came to belong to its customer."""

    CREATED = "created"  # its first message created the customer
    PHONE = "phone"  # a verified phone number joined it to the customer
    WEBREF = "webref"  # a signed web identity
    LINK = "link"  # a link code, confirmed where needed
    CALLER_ID = "caller_id"  # a voice caller id matched: continuity only, no personal data
    OUTBOUND_CALL = "outbound_call"  # we phoned the customer's number: whoever answers proves nothing more


@dataclass(frozen=True)
class LinkOutcome:
    """What a ``LINK 123456`` message did (read by ``action_confirm_link``)."""

    ok: bool
    reason: Optional[str] = None  # invalid_or_expired | rate_limited | same_customer | pending_confirmation
    merged_from: Optional[str] = None
    pending: bool = False
    confirm_label: Optional[str] = None  # where the customer is asked to confirm ("WhatsApp")

    @classmethod
    def from_dict(cls, data: Any) -> Optional["LinkOutcome"]:
        """The outcome from its metadata form."""
        if not isinstance(data, Mapping):
            return None
        return cls(bool(data.get("ok")), data.get("reason"), data.get("merged_from"), bool(data.get("pending")),
                   data.get("confirm_label"))


@dataclass(frozen=True)
class TurnMetadata:
    """The reserved metadata of one customer message, set by the connector pipeline only.

    ``owner`` is the business customer (``customers.id``) the sending channel
    identity is proven to be, by a verified phone or a signed web identity; it
    is what makes personal data visible without step-up. ``identity`` is an
    opaque hash of the channel identity, the subject of step-up state;
    ``source`` one of where the message came from (the client address on the
    web, the channel identity behind a platform), for failure budgets.
    """

    channel: Optional[str] = None
    channel_user_id: Optional[str] = None
    message_id: Optional[str] = None
    trace_id: Optional[str] = None
    trust: Trust = Trust.ANONYMOUS
    origin: Origin = Origin.CREATED
    identity: Optional[str] = None
    source: Optional[str] = None
    owner: Optional[int] = None
    channel_label: Optional[str] = None
    previous_channel: Optional[str] = None
    previous_channel_label: Optional[str] = None
    is_new_customer: bool = False
    kind: str = "text"
    locale: Optional[str] = None
    profile_name: Optional[str] = None
    link_result: Optional[LinkOutcome] = None
    call_sid: Optional[str] = None
    signed: bool = field(default=False, compare=False)

    # ------------------------------------------------------------ writing

    def to_metadata(self, key: str) -> Dict[str, Any]:
        """The reserved keys and their signature, as they go into ``UserMessage.metadata``."""
        data = self._reserved()
        data[SIGNATURE_KEY] = _sign(data, key)
        return data

    def _reserved(self) -> Dict[str, Any]:
        # Field by field: ``asdict`` deep-copies every value, a tenth of a millisecond per turn.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["trust"] = self.trust.value
        data["origin"] = self.origin.value
        data["link_result"] = asdict(self.link_result) if self.link_result else None
        return data

    # ------------------------------------------------------------ reading

    @classmethod
    def read(cls, metadata: Any, key: str) -> "TurnMetadata":
        """The typed metadata of a message, if its signature holds; else an anonymous one."""
        if not isinstance(metadata, Mapping):
            return cls()
        given = metadata.get(SIGNATURE_KEY)
        reserved = {name: metadata.get(name) for name in _FIELD_NAMES}
        if not isinstance(given, str) or not hmac.compare_digest(given, _sign(reserved, key)):
            return cls()
        try:
            origin = Origin(reserved.get("origin") or Origin.CREATED)
        except ValueError:
            origin = Origin.CREATED
        owner = reserved.get("owner")
        return cls(
            **{
                **{k: reserved.get(k) for k in _PLAIN_FIELDS},
                "trust": Trust.parse(reserved.get("trust")),
                "origin": origin,
                "owner": owner if isinstance(owner, int) else None,
                "is_new_customer": bool(reserved.get("is_new_customer")),
                "kind": reserved.get("kind") or "text",
                "link_result": LinkOutcome.from_dict(reserved.get("link_result")),
                "signed": True,
            }
        )

    @property
    def may_see_conversation_data(self) -> bool:
        """Whether what the customer said earlier may be repeated to this sender.

        A voice caller id matched to an existing customer only proves nothing,
        nor does answering a phone we called (``OUTBOUND_CALL``); everyone else
        reached this conversation through their own identity.
        """
        return self.signed and self.origin not in (Origin.CALLER_ID, Origin.OUTBOUND_CALL)


_FIELD_NAMES = tuple(f.name for f in fields(TurnMetadata) if f.name != "signed")
_PLAIN_FIELDS = tuple(
    name for name in _FIELD_NAMES
    if name not in ("trust", "origin", "owner", "is_new_customer", "kind", "link_result")
)
RESERVED_KEYS: FrozenSet[str] = frozenset(_FIELD_NAMES) | {SIGNATURE_KEY}


def _sign(reserved: Mapping[str, Any], key: str) -> str:
    canonical = json.dumps({k: reserved.get(k) for k in _FIELD_NAMES}, sort_keys=True, separators=(",", ":"),
                           default=str)
    return hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------- payloads


@dataclass(frozen=True)
class HandoffSignal:
    """Sent by the bot when it hands a conversation over (``{"handoff": {...}}``).

    Text channels drop it; a voice call transfers when ``transfer`` is true
    and a transfer target is configured.
    """

    case: int
    transfer: bool
    queue: str
    reason: str
    status: str

    KEY = "handoff"

    def to_custom(self) -> Dict[str, Any]:
        """The custom payload ``dispatcher.utter_message(json_message=...)`` sends."""
        return {self.KEY: asdict(self)}

    @classmethod
    def from_custom(cls, custom: Any) -> Optional["HandoffSignal"]:
        """The signal in a custom payload, or None if it carries none."""
        data = custom.get(cls.KEY) if isinstance(custom, Mapping) else None
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(int(data.get("case") or 0), bool(data.get("transfer")), str(data.get("queue") or ""),
                       str(data.get("reason") or ""), str(data.get("status") or ""))
        except (TypeError, ValueError):
            return None


def is_internal_note(custom: Any) -> bool:
    """Whether a custom payload is meant for the desk only (never sent to the customer)."""
    return isinstance(custom, Mapping) and bool(custom.get("internal_note") or custom.get("type") == "internal_note")


def only_for_channel(custom: Any) -> Optional[str]:
    """The one channel a custom payload is meant for (``{"channel": "whatsapp", ...}``), if any."""
    if isinstance(custom, Mapping) and isinstance(custom.get("channel"), str):
        return custom["channel"]
    return None
