"""What one webhook (or socket message, or journey step) carries through the pipeline.

``Inbound`` is what arrived, whatever transport brought it: body, headers,
query, the client's address, the server app. ``parse`` turns it into a
``Delivery``: the ``Envelope`` of each message it carries, in order, plus
whatever the channel needs to remember while answering (a subclass adds
fields: the voice call's state, the web chat's transport). Every pipeline hook
receives the delivery, so socket.io, REST, voice and journeys drive one
pipeline with no fake request and nothing hidden in ``request.ctx``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from rasa.core.channels.channel import UserMessage

# Envelope kinds. "text", "button", "location" and "contact" reach the bot;
# "media" only when it carries a caption; "ignored" is dropped quietly
# (reactions, platform notices); anything else gets the polite reply.
KIND_TEXT = "text"
KIND_BUTTON = "button"
KIND_LOCATION = "location"
KIND_CONTACT = "contact"
KIND_MEDIA = "media"
KIND_IGNORED = "ignored"
KIND_UNSUPPORTED = "unsupported"


class BadPayload(ValueError):
    """A request body that cannot be used; answered 400 with this message."""


@dataclass
class Envelope:
    """One inbound message in the same shape for every channel.

    ``text`` is what the customer typed (or a caption); ``payload`` is the
    button payload for ``kind == "button"``. ``phone`` is E.164 and only set
    when the platform vouches for it (then ``phone_verified``) or the channel
    knows it with lower trust (a voice caller id). ``extra`` goes into the
    UserMessage metadata as is, except for reserved keys, which it can never set.
    """

    channel: str
    channel_user_id: str
    message_id: str
    text: Optional[str] = None
    payload: Optional[str] = None
    kind: str = KIND_TEXT
    locale: Optional[str] = None
    profile_name: Optional[str] = None
    phone: Optional[str] = None
    phone_verified: bool = False
    signed_customer_id: Optional[str] = None
    signature: Optional[str] = None
    signature_expires: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> Optional[str]:
        """What the bot should read: the button payload, else the text."""
        if self.kind == KIND_BUTTON and self.payload:
            return self.payload
        return self.text if self.text and self.text.strip() else None

    @property
    def readable(self) -> bool:
        """Whether the bot can do anything with this message."""
        if self.kind in (KIND_TEXT, KIND_BUTTON, KIND_LOCATION, KIND_CONTACT, KIND_MEDIA):
            return self.content is not None
        return False


@dataclass
class Outcome:
    """What the pipeline did with one envelope."""

    envelope: Envelope
    status: str  # processed | duplicate | in_progress | unsupported | ignored | failed | limited | resent
    customer_id: Optional[str] = None
    trace_id: Optional[str] = None
    message: Optional[UserMessage] = None
    retry_after: int = 0


@dataclass
class Inbound:
    """What arrived, transport-neutral: the raw body and what came with it."""

    app: Any = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    args: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""
    path: str = ""
    query_string: str = ""
    scheme: str = "http"
    host: str = ""
    source: str = "unknown"  # the client's address (proxy-aware)
    route: str = "webhook"  # which of the channel's routes received it
    transport: str = "http"  # http | socketio | internal
    received: float = field(default_factory=time.monotonic)  # when it arrived (turn latency; monotonic clock)

    @property
    def agent(self) -> Any:
        """Rasa's agent (tracker store, lock store), when running inside the rasa server."""
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    def arg(self, name: str) -> Optional[str]:
        """One query parameter (the first value)."""
        value = self.args.get(name) if self.args else None
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        return value if isinstance(value, str) else None


@dataclass
class Delivery(Sequence):
    """The envelopes one inbound carried, in order, and what answering them needs.

    A delivery is a sequence of its envelopes (``for envelope in delivery``).
    Channels that must remember more while answering subclass it.
    """

    inbound: Inbound
    envelopes: List[Envelope] = field(default_factory=list)
    outcomes: List[Outcome] = field(default_factory=list)
    payload: Any = None

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self.envelopes)

    def __len__(self) -> int:
        return len(self.envelopes)

    def __getitem__(self, index: Any) -> Any:
        return self.envelopes[index]

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, Delivery):
            return self.envelopes == other.envelopes and self.inbound == other.inbound
        if isinstance(other, list):
            return self.envelopes == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
