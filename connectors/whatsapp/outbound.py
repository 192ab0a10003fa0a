"""WhatsApp Cloud API, sending: ``POST {api_base}/{phone_number_id}/messages``.

Markdown becomes WhatsApp formatting, long text is split at 4096 characters,
buttons become reply buttons (1-3), a list (4-10) or numbered text (more; a
reply of just the number is mapped back to the button, see the inbound side).
Outside the 24-hour customer-service window (counted from the customer's last
message) only the configured template is sent.
"""
import logging
from typing import Any, Dict, List, Optional

from connectors import markup
from connectors.base import ThreadlineOutput, alias_payload, run_sync
from connectors.outbound import note_failure
from connectors.whatsapp.common import (
    BUTTON_ID_LIMIT,
    BUTTON_TITLE_LIMIT,
    CHOICES_TTL,
    INTERACTIVE_BODY_LIMIT,
    LIST_BUTTON_LIMIT,
    MAX_LIST_ROWS,
    MAX_REPLY_BUTTONS,
    MEDIA_TYPES,
    ROW_DESCRIPTION_LIMIT,
    ROW_ID_LIMIT,
    ROW_TITLE_LIMIT,
    TEMPLATE_PARAM_LIMIT,
    TEXT_LIMIT,
    _choices_key,
    _digits,
    _window_key,
)
from threadline import settings

logger = logging.getLogger(__name__)


class WhatsAppOutput(ThreadlineOutput):
    """Renders Rasa responses as WhatsApp Cloud API messages."""

    channel = "whatsapp"

    @property
    def url(self) -> str:
        """The messages endpoint of the configured business number."""
        return f"{self.config['api_base'].rstrip('/')}/{self.config['phone_number_id']}/messages"

    @property
    def headers(self) -> Dict[str, str]:
        """Bearer authorisation with the access token."""
        return {"Authorization": f"Bearer {self.config['access_token']}"}

    async def post(self, address: str, message: Dict[str, Any]) -> bool:
        """Send one message object to ``address`` (a wa_id, or a BSUID as ``recipient``)."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        body["to" if _digits(address) == address else "recipient"] = address
        body.update(message)
        result = await self.sender.post(self.url, body, self.headers)
        return result.ok

    async def in_window(self, customer_id: str) -> bool:
        """Whether the customer wrote within the last 24 hours."""
        return bool(await run_sync(self.redis_client().exists, _window_key(customer_id)))

    async def window_open(self, recipient_id: str) -> bool:
        """WhatsApp's customer-service window (consent checks it for marketing sent on the bot's own)."""
        return await self.in_window(recipient_id)

    async def send_template(self, address: str, text: str, chosen: Optional[Dict[str, str]] = None) -> bool:
        """Send the follow-up template (or ``chosen``: a message's own ``template``) with ``text`` as its body parameter.

        Template parameters may not contain newlines, tabs or runs of spaces.
        A journey step names its own approved template; everything else uses
        ``WHATSAPP_TEMPLATE_NAME``.
        """
        parameter = markup.shorten(text, TEMPLATE_PARAM_LIMIT) or "-"
        chosen = chosen if isinstance(chosen, dict) and chosen.get("name") else {}
        template = {
            "name": chosen.get("name") or settings.get().get("WHATSAPP_TEMPLATE_NAME"),
            "language": {"code": chosen.get("language") or settings.get().get("WHATSAPP_TEMPLATE_LANGUAGE")},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": parameter}]}],
        }
        return await self.post(address, {"type": "template", "template": template})

    async def _text(self, address: str, text: str) -> None:
        for chunk in markup.split_text(text, TEXT_LIMIT):
            await self.post(address, {"type": "text", "text": {"body": chunk, "preview_url": "http" in chunk}})

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Text, converted from Markdown and split at 4096 characters."""
        address = await self.address(recipient_id)
        converted = markup.to_whatsapp(text)
        if not await self.in_window(recipient_id):
            await self.send_template(address, converted, kwargs.get("template"))
            return
        await self._text(address, converted)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        """Reply buttons (1-3), a list (4-10), or numbered options (more)."""
        address = await self.address(recipient_id)
        converted = markup.to_whatsapp(text or "")
        buttons = [b for b in buttons if isinstance(b, dict) and b.get("title")]
        if not buttons:
            await self.send_text_message(recipient_id, text, **kwargs)
            return
        if not await self.in_window(recipient_id):
            await self._remember_choices(recipient_id, buttons)
            options = " ".join(f"{i}. {b['title']}" for i, b in enumerate(buttons, 1))
            await self.send_template(address, f"{converted} {options}".strip(), kwargs.get("template"))
            return
        if len(buttons) > MAX_LIST_ROWS:
            await self._remember_choices(recipient_id, buttons)
            lines = "\n".join(f"{i}. {b['title']}" for i, b in enumerate(buttons, 1))
            await self._text(address, f"{converted}\n\n{lines}".strip())
            return
        body = await self._body_for_interactive(address, converted)
        if len(buttons) <= MAX_REPLY_BUTTONS:
            interactive = await self._reply_buttons(body, buttons)
        else:
            interactive = await self._list(body, buttons, kwargs.get("button_label"))
        await self.post(address, {"type": "interactive", "interactive": interactive})

    async def _body_for_interactive(self, address: str, text: str) -> str:
        """Send what does not fit in an interactive body (1024) first; return the rest."""
        chunks = markup.split_text(text, TEXT_LIMIT) or ["Please choose:"]
        last = chunks.pop()
        if len(last) > INTERACTIVE_BODY_LIMIT:
            pieces = markup.split_text(last, INTERACTIVE_BODY_LIMIT)
            last = pieces.pop()
            chunks.append("\n\n".join(pieces))
        for chunk in chunks:
            await self._text(address, chunk)
        return last

    async def _payload_id(self, payload: str, limit: int) -> str:
        return await run_sync(alias_payload, self.name(), payload, limit, self.redis_client())

    async def _reply_buttons(self, body: str, buttons: List[Dict[str, Any]]) -> Dict[str, Any]:
        titles = markup.unique_titles([b["title"] for b in buttons], BUTTON_TITLE_LIMIT)
        replies = []
        for title, button in zip(titles, buttons):
            button_id = await self._payload_id(str(button.get("payload") or button["title"]), BUTTON_ID_LIMIT)
            replies.append({"type": "reply", "reply": {"id": button_id, "title": title}})
        return {"type": "button", "body": {"text": body}, "action": {"buttons": replies}}

    async def _list(self, body: str, buttons: List[Dict[str, Any]], label: Optional[str]) -> Dict[str, Any]:
        titles = markup.unique_titles([b["title"] for b in buttons], ROW_TITLE_LIMIT)
        rows = []
        for title, button in zip(titles, buttons):
            row = {"id": await self._payload_id(str(button.get("payload") or button["title"]), ROW_ID_LIMIT),
                   "title": title}
            description = button.get("description") or (button["title"] if title != button["title"] else None)
            if description:
                row["description"] = markup.shorten(description, ROW_DESCRIPTION_LIMIT)
            rows.append(row)
        return {
            "type": "list",
            "body": {"text": body},
            "action": {"button": markup.shorten(label or "Options", LIST_BUTTON_LIMIT), "sections": [{"rows": rows}]},
        }

    async def _remember_choices(self, customer_id: str, buttons: List[Dict[str, Any]]) -> None:
        mapping = {str(i): str(b.get("payload") or b["title"]) for i, b in enumerate(buttons, 1)}
        key = _choices_key(customer_id)

        def store() -> None:
            pipe = self.redis_client().pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, CHOICES_TTL)
            pipe.execute()

        await run_sync(store)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """An image by link."""
        address = await self.address(recipient_id)
        if not await self.in_window(recipient_id):
            await self.send_template(address, image)
            return
        await self.post(address, {"type": "image", "image": {"link": image}})

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        """A document (or image/video/audio given as ``{"type":..., "url"/"link":...}``) by link."""
        address = await self.address(recipient_id)
        if isinstance(attachment, dict):
            media_type = attachment.get("type") if attachment.get("type") in MEDIA_TYPES else "document"
            link = attachment.get("link") or attachment.get("url") or (attachment.get("payload") or {}).get("src")
        else:
            media_type, link = "document", str(attachment)
        if not link or not str(link).startswith(("http://", "https://")):
            await self.send_text_message(recipient_id, str(attachment))
            return
        if not await self.in_window(recipient_id):
            await self.send_template(address, str(link))
            return
        await self.post(address, {"type": media_type, media_type: {"link": link}})

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """A WhatsApp message object (``{"type": ..., ...}``, or under ``"whatsapp"``) sent as is."""
        message = dict(json_message.get("whatsapp") or json_message)
        message.pop("channel", None)
        address = await self.address(recipient_id)
        if "type" not in message:
            if message.get("text"):
                await self.send_text_message(recipient_id, str(message["text"]))
            else:
                logger.info("whatsapp: custom payload without a WhatsApp message type not sent: %s", list(message))
            return
        if message["type"] != "template" and not await self.in_window(recipient_id):
            note_failure("outside the 24-hour customer-service window; only templates may be sent")
            return
        await self.post(address, message)
