"""WhatsApp Cloud API connector (``connectors.whatsapp.WhatsAppInput`` in credentials.yml).

``inbound`` receives and verifies webhooks, ``outbound`` renders and sends
messages, ``common`` holds what both need (limits, keys, the signature).
"""
from connectors.whatsapp.common import (  # noqa: F401 (the package's interface)
    _choices_key,
    _status_key,
    _window_key,
    message_status,
    signature_for,
    window_seconds,
)
from connectors.whatsapp.inbound import WhatsAppInput  # noqa: F401
from connectors.whatsapp.outbound import WhatsAppOutput  # noqa: F401
