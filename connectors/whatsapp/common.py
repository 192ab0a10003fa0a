"""What WhatsApp's inbound and outbound sides share: limits, Redis keys, the signature, the window.

Redis keys (``threadline.keys``): ``whatsapp:window:{customer}`` (exists
while the window is open), ``whatsapp:choices:{customer}`` (numbered
options), ``whatsapp:status:{wamid}`` (delivery statuses).
"""
import hashlib
import hmac
import re
from typing import Any, Dict

from threadline import settings
from threadline.keys import Keys

DEFAULT_API_BASE = "https://graph.facebook.com/v21.0"
TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
ROW_ID_LIMIT = 200
LIST_BUTTON_LIMIT = 20
MAX_REPLY_BUTTONS = 3
MAX_LIST_ROWS = 10
TEMPLATE_PARAM_LIMIT = 1000
WINDOW_SECONDS = 24 * 3600
CHOICES_TTL = 24 * 3600
STATUS_TTL = 7 * 24 * 3600
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
IGNORED_TYPES = ("reaction", "system", "request_welcome", "ephemeral")
_NUMBER_REPLY = re.compile(r"^\s*#?(\d{1,3})\s*[.)]?\s*$")


def signature_for(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _window_key(customer_id: str) -> str:
    return Keys().whatsapp("window", customer_id)


def _choices_key(customer_id: str) -> str:
    return Keys().whatsapp("choices", customer_id)


def _status_key(message_id: str) -> str:
    return Keys().whatsapp("status", message_id)


def message_status(message_id: str, redis: Any) -> Dict[str, str]:
    """Recorded statuses of one of our messages: ``{"sent": ts, "delivered": ts, ...}``."""
    raw = redis.hgetall(_status_key(message_id))
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def window_seconds() -> int:
    """Length of the customer-service window (``WHATSAPP_WINDOW_SECONDS``, default 24 h)."""
    return settings.get().integer("WHATSAPP_WINDOW_SECONDS")


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())
