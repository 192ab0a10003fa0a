"""A customer on the web chat's REST webhook, as the widget talks to the real stack."""
import uuid
from typing import Any, Dict, List, Optional

import requests

from threadline import identity


class WebChat:
    """One browser: a visitor token from ``POST /session``, then messages to ``/webhook``."""

    def __init__(self, stack, **signed: Any) -> None:
        self.base = f"{stack.rasa_url}/webhooks/webchat"
        issued = requests.post(self.base + "/session", timeout=30).json()
        self.visitor, self.sender = issued["visitor"], issued["sender"]
        self.signed = signed

    def say(self, text: str, **fields: Any) -> List[Dict[str, Any]]:
        """Send one message; the bot's replies."""
        body = {"sender": self.sender, "message": text, "message_id": uuid.uuid4().hex, **self.signed, **fields}
        reply = requests.post(self.base + "/webhook", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def say_text(self, text: str, **fields: Any) -> str:
        """Send one message; the replies' text joined."""
        return " ".join(m.get("text", "") for m in self.say(text, **fields))

    @property
    def customer_id(self) -> Optional[str]:
        """The customer this browser's visitor belongs to now (the conversation id)."""
        known = identity.channel_identity("webchat", self.visitor)
        return known.customer_id if known else None


# The e2e conversations' name for it.
Chat = WebChat
