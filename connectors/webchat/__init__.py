"""The web chat connector (``connectors.webchat.WebchatInput`` in credentials.yml).

``channel`` is the input channel and its routes, ``outputs`` where its messages
go, ``visitors`` the visitor tokens and per-visitor state.
"""
from connectors.webchat.channel import (  # noqa: F401 (the package's interface)
    DEFAULT_ALLOWED_PAYLOADS,
    IDENTITY_SECRET_ENV,
    WebchatInput,
    WebDelivery,
)
from connectors.webchat.outputs import (  # noqa: F401
    CHANNEL,
    LiveConnections,
    WebchatPushOutput,
    WebchatReplyCollector,
    WebchatSocketOutput,
)
from connectors.webchat.visitors import (  # noqa: F401
    VISITOR_ID_RE,
    new_visitor,
    new_visitor_id,
    outbox_push,
    outbox_take,
    remember_offered,
    visitor_from_token,
    visitor_room,
    visitor_token,
    was_offered,
)
