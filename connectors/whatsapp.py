"""WhatsApp Cloud API connector (``whatsapp``): ``GET`` and ``POST /webhooks/whatsapp/webhook``.

Inbound: Meta signs every delivery with ``X-Hub-Signature-256`` (HMAC-SHA256 of
the raw body under the app secret); ``entry[].changes[].value`` carries
``messages`` (forwarded to Rasa in order), ``contacts`` (profile names) and
``statuses`` (sent/delivered/read/failed of our own messages, recorded in Redis,
never shown to the bot). A user is their ``wa_id`` (a phone number WhatsApp has
verified) or, for users who hide their number behind a username, their
business-scoped user id (BSUID, ``from_user_id`` / ``user_id``).

Outbound: ``POST {api_base}/{phone_number_id}/messages``. Markdown becomes
WhatsApp formatting, long text is split at 4096 characters, buttons become reply
buttons (1-3), a list (4-10) or numbered text (more; a reply of just the number
is mapped back to the button). Outside the 24-hour customer-service window
(counted from the customer's last message) only the configured template is sent.

Redis keys (under ``THREADLINE_KEY_PREFIX``): ``whatsapp:window:{customer}``
(exists while the window is open), ``whatsapp:choices:{customer}`` (numbered
options), ``whatsapp:status:{wamid}`` (delivery statuses).
"""
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, Dict, List, Optional

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import markup
from connectors.base import (
    KIND_BUTTON,
    KIND_IGNORED,
    KIND_LOCATION,
    KIND_MEDIA,
    KIND_TEXT,
    KIND_UNSUPPORTED,
    BadPayload,
    Delivery,
    Envelope,
    Inbound,
    ThreadlineInput,
    ThreadlineOutput,
    alias_payload,
    constant_time_equals,
    iter_dicts,
    run_sync,
)
from connectors.outbound import note_failure
from threadline import identity, settings
from threadline.keys import Keys

logger = logging.getLogger(__name__)

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


class WhatsAppInput(ThreadlineInput):
    """Receives WhatsApp Cloud API webhooks (credentials: see ``credential_env``)."""

    channel = "whatsapp"
    channel_label = "WhatsApp"
    credential_env = {
        "verify_token": "WHATSAPP_VERIFY_TOKEN",
        "app_secret": "WHATSAPP_APP_SECRET",
        "access_token": "WHATSAPP_ACCESS_TOKEN",
        "phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
        "api_base": "WHATSAPP_API_BASE",
    }
    credential_defaults = {"api_base": DEFAULT_API_BASE}

    def make_sender(self):
        """The shared sender, with the access token masked in logs."""
        sender = super().make_sender()
        sender.secrets = [self.config["access_token"]]
        return sender

    def register_routes(self, blueprint: Blueprint, on_new_message: Any) -> None:
        """``GET /webhook``: Meta's subscription handshake."""

        @blueprint.route("/webhook", methods=["GET"], name="webhook_verify")
        async def verify_subscription(request: Request) -> HTTPResponse:
            mode = request.args.get("hub.mode")
            token = request.args.get("hub.verify_token")
            challenge = request.args.get("hub.challenge", "")
            if mode == "subscribe" and constant_time_equals(token, self.config["verify_token"]):
                return response.text(challenge, content_type="text/plain")
            logger.warning("whatsapp: webhook verification refused (mode=%r)", mode)
            return response.text("forbidden", status=403)

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """Check ``X-Hub-Signature-256`` against the raw body, in constant time."""
        given = (inbound.headers.get("x-hub-signature-256") or "").strip()
        if not given.lower().startswith("sha256="):
            return False
        expected = signature_for(body, self.config["app_secret"])
        return hmac.compare_digest(("sha256=" + given[7:].lower()).encode("utf-8", "replace"), expected.encode())

    # ------------------------------------------------------------------ parsing

    def _changes(self, payload: Any) -> List[Dict[str, Any]]:
        if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
            raise BadPayload("not a WhatsApp Business Account notification")
        values = []
        for entry in iter_dicts(payload["entry"]):
            for change in iter_dicts(entry.get("changes")):
                value = change.get("value")
                if change.get("field", "messages") == "messages" and isinstance(value, dict):
                    values.append(value)
        return values

    def record_events(self, delivery: Delivery) -> None:
        """Record ``statuses`` of our own messages (not shown to the bot)."""
        redis = None
        for value in self._changes(delivery.payload):
            for status in iter_dicts(value.get("statuses")):
                message_id, state = status.get("id"), status.get("status")
                if not message_id or not state:
                    continue
                redis = redis or self.redis_client()
                fields = {str(state): str(status.get("timestamp") or int(time.time()))}
                if status.get("recipient_id"):
                    fields["recipient_id"] = str(status["recipient_id"])
                if status.get("errors"):
                    fields["errors"] = json.dumps(status["errors"])
                    logger.warning("whatsapp: message %s failed: %s", message_id, fields["errors"])
                pipe = redis.pipeline(transaction=False)
                pipe.hset(_status_key(message_id), mapping=fields)
                pipe.expire(_status_key(message_id), STATUS_TTL)
                pipe.execute()

    def parse(self, inbound: Inbound, payload: Any) -> List[Envelope]:
        """Messages of every change, in delivery order."""
        envelopes = []
        for value in self._changes(payload):
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            number_id = str(metadata.get("phone_number_id") or "")
            business_number = str(metadata.get("display_phone_number") or "")
            contacts = list(iter_dicts(value.get("contacts")))
            for message in iter_dicts(value.get("messages")):
                envelope = self._envelope(message, contacts)
                if envelope is None:
                    continue
                if number_id and number_id != self.config["phone_number_id"]:
                    logger.info("whatsapp: message for another number (%s) ignored", number_id)
                    envelope.kind = KIND_IGNORED
                elif business_number and _digits(message.get("from")) == _digits(business_number):
                    envelope.kind = KIND_IGNORED  # an echo of our own message
                envelopes.append(envelope)
        return envelopes

    def _envelope(self, message: Dict[str, Any], contacts: List[Dict[str, Any]]) -> Optional[Envelope]:
        message_id = message.get("id")
        wa_id = message.get("from")
        bsuid = message.get("from_user_id")
        contact = _contact_for(contacts, wa_id, bsuid)
        bsuid = bsuid or contact.get("user_id")
        wa_id = wa_id or contact.get("wa_id")
        user_id = wa_id or bsuid
        if not message_id or not user_id:
            logger.warning("whatsapp: message without id or sender ignored: %s", message.get("type"))
            return None
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        kind, text, payload, extra = _content(message)
        extra.update({"type": message.get("type"), "platform_timestamp": message.get("timestamp")})
        if bsuid:
            extra["whatsapp_user_id"] = bsuid
        if profile.get("username"):
            extra["username"] = profile["username"]
        if isinstance(message.get("context"), dict) and message["context"].get("id"):
            extra["reply_to"] = message["context"]["id"]
        phone = identity.normalise_phone("+" + str(wa_id)) if wa_id and str(wa_id).isdigit() else None
        return Envelope(
            channel=self.name(),
            channel_user_id=str(user_id),
            message_id=str(message_id),
            text=text,
            payload=payload,
            kind=kind,
            profile_name=profile.get("name"),
            phone=phone,
            phone_verified=bool(phone),
            extra=extra,
        )

    # ------------------------------------------------------ per-customer state

    def on_identified(self, envelope: Envelope, customer_id: str) -> None:
        """A message from the customer (re)opens the 24-hour window."""
        if envelope.kind != KIND_IGNORED:
            self.redis_client().set(_window_key(customer_id), str(int(time.time())), ex=window_seconds())

    def message_text(self, envelope: Envelope, customer_id: str) -> Optional[str]:
        """A bare number answering a numbered list becomes that option's payload.

        The numbered options apply to the very next message only.
        """
        redis = self.redis_client()
        pipe = redis.pipeline(transaction=True)
        pipe.hgetall(_choices_key(customer_id))
        pipe.delete(_choices_key(customer_id))
        choices, _ = pipe.execute()
        if choices and envelope.kind == KIND_TEXT:
            match = _NUMBER_REPLY.match(envelope.text or "")
            chosen = choices.get(match.group(1).encode()) if match else None
            if chosen is not None:
                envelope.extra["chosen_option"] = int(match.group(1))
                return chosen.decode("utf-8")
        return super().message_text(envelope, customer_id)

    def get_output_channel(self) -> "WhatsAppOutput":
        """The Cloud API sender for replies and proactive messages."""
        return WhatsAppOutput(self.config, self.sender, redis=self._redis)


def window_seconds() -> int:
    """Length of the customer-service window (``WHATSAPP_WINDOW_SECONDS``, default 24 h)."""
    return settings.get().integer("WHATSAPP_WINDOW_SECONDS")


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def _contact_for(contacts: List[Dict[str, Any]], wa_id: Any, bsuid: Any) -> Dict[str, Any]:
    for contact in contacts:
        if (wa_id and contact.get("wa_id") == wa_id) or (bsuid and contact.get("user_id") == bsuid):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _content(message: Dict[str, Any]):
    """(kind, text, payload, extra) of one WhatsApp message object."""
    kind_name = message.get("type")
    body = message.get(kind_name) if isinstance(message.get(kind_name), dict) else {}
    if kind_name == "text":
        return KIND_TEXT, body.get("body"), None, {}
    if kind_name == "interactive":
        reply_type = body.get("type")
        reply = body.get(reply_type) if isinstance(body.get(reply_type), dict) else {}
        if reply_type in ("button_reply", "list_reply") and reply.get("id"):
            return KIND_BUTTON, reply.get("title"), str(reply["id"]), {"button_title": reply.get("title")}
        return KIND_UNSUPPORTED, None, None, {"interactive_type": reply_type}
    if kind_name == "button":  # quick-reply button of a template
        payload = body.get("payload") or body.get("text")
        if payload:
            return KIND_BUTTON, body.get("text"), str(payload), {"button_title": body.get("text")}
        return KIND_UNSUPPORTED, None, None, {}
    if kind_name == "location" and "latitude" in body and "longitude" in body:
        location = {k: body.get(k) for k in ("latitude", "longitude", "name", "address") if body.get(k) is not None}
        return KIND_LOCATION, f"location: {body['latitude']},{body['longitude']}", None, {"location": location}
    if kind_name in MEDIA_TYPES:
        media = {"type": kind_name}
        media.update({k: body.get(k) for k in ("id", "mime_type", "filename") if body.get(k)})
        return KIND_MEDIA, body.get("caption"), None, {"media": media}
    if kind_name in IGNORED_TYPES:
        return KIND_IGNORED, None, None, {}
    return KIND_UNSUPPORTED, None, None, {}


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

    async def send_template(self, address: str, text: str) -> bool:
        """Send the follow-up template with ``text`` as its body parameter.

        Template parameters may not contain newlines, tabs or runs of spaces.
        """
        parameter = markup.shorten(text, TEMPLATE_PARAM_LIMIT) or "-"
        template = {
            "name": settings.get().get("WHATSAPP_TEMPLATE_NAME"),
            "language": {"code": settings.get().get("WHATSAPP_TEMPLATE_LANGUAGE")},
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
            await self.send_template(address, converted)
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
            await self.send_template(address, f"{converted} {options}".strip())
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
