"""Links and images during a call: sent to the customer's messaging channel, and the caller told so.

A link cannot be spoken usefully. When the bot's reply to a call carries
links or images, ``SendsElsewhere`` (mixed into ``VoiceInput``) sends them to
the customer's WhatsApp or Telegram (the last one used first) and adds "I've
sent the link to your WhatsApp." to the prompt; with no messaging channel
they are left out and nothing is said about them.
"""
import asyncio
import logging
from typing import Any, List, Optional, Tuple

from connectors.base import Inbound, run_sync
from connectors.voice.calls import CallState
from connectors.voice.speech import Prompt, sent_elsewhere_ssml
from threadline import identity, prefetch

logger = logging.getLogger(__name__)

MESSAGING_LABELS = {"whatsapp": "WhatsApp", "telegram": "Telegram"}


class SendsElsewhere:
    """Sending a call's links and images to a messaging channel."""

    async def _offer_elsewhere(self, inbound: Inbound, state: CallState, prompt: Prompt) -> None:
        """Send links/images to the customer's messaging channel and say so; else omit them."""
        if not (prompt.links or prompt.images) or not state.customer_id:
            return
        found = await run_sync(self._messaging_channel, inbound, state.customer_id)
        if found is None:
            logger.info("%s: links left out of the call (no messaging channel)", self.name())
            return
        name, output = found
        prompt.parts.append(sent_elsewhere_ssml(prompt, MESSAGING_LABELS[name]))
        task = asyncio.ensure_future(self._deliver(output, state.customer_id, prompt.links, prompt.images))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _messaging_channel(self, inbound: Inbound, customer_id: str) -> Optional[Tuple[str, Any]]:
        profile = prefetch.get_cached(customer_id, "profile", self._redis)
        if profile is None:
            redis = self.redis_client()
            profile = {"channels": list(identity.addresses(customer_id, redis)),
                       "last_channel": identity.last_channel(customer_id, redis)}
        channels = [c for c in profile.get("channels") or [] if c in MESSAGING_LABELS]
        channels.sort(key=lambda c: (c != profile.get("last_channel"), list(MESSAGING_LABELS).index(c)))
        configured = {c.name(): c for c in getattr(getattr(inbound.app, "ctx", None), "input_channels", None) or []}
        for name in channels:
            if name in configured:
                return name, configured[name].get_output_channel()
        return None

    async def _deliver(self, output: Any, customer_id: str, links: List[str], images: List[str]) -> None:
        try:
            for image in images:
                await output.send_image_url(customer_id, image)
            for link in links:
                await output.send_text_message(customer_id, link)
        except Exception:
            logger.exception("%s: could not send links to the customer's messaging channel", self.name())
