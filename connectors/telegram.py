"""Telegram Bot API connector (``telegram``): ``POST /webhooks/telegram/webhook``.

Telegram proves a webhook call is its own with the ``secret_token`` given to
``setWebhook``, echoed in ``X-Telegram-Bot-Api-Secret-Token``. Updates carry a
``message``, an ``edited_message`` or a ``callback_query`` (a tap on an inline
button, acknowledged with ``answerCallbackQuery``); ``update_id`` is the dedupe
key. ``/start <payload>`` deep links pass their payload; ``/start 123456`` is a
link code. Only private chats are served; a contact the user shares of
themselves gives a verified phone number. A ``my_chat_member`` update saying
the user blocked the bot (``kicked``), and a 403 answer from ``sendMessage``,
record a channel opt-out (``connectors.consent``); unblocking grants it again.

Outbound: ``{api_base}/bot<token>/sendMessage`` with ``parse_mode`` MarkdownV2
(the assistant's Markdown converted, everything else escaped; plain text if
Telegram still refuses the entities), inline keyboards with ``callback_data`` of
at most 64 bytes (longer payloads are kept in Redis under a short key).
"""
import logging
import re
from typing import Any, Dict, List, Optional

from connectors import markup
from connectors.base import (
    KIND_BUTTON,
    KIND_CONTACT,
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
    run_sync,
)
from connectors import consent as consent_signals
from connectors import shape
from connectors.outbound import OutboundSender, note_failure
from threadline import identity

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.telegram.org"
TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
SHORT_TITLE = 20
MEDIA_FIELDS = ("photo", "document", "video", "audio", "voice", "sticker", "animation", "video_note")
IGNORED_FIELDS = ("new_chat_members", "left_chat_member", "pinned_message", "new_chat_title")
_START = re.compile(r"^/start(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)
_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@\w+)?")


def retry_after_hint(body: Any) -> Optional[float]:
    """Telegram's ``parameters.retry_after`` from a 429 answer."""
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        value = body["parameters"].get("retry_after")
        if isinstance(value, (int, float)):
            return float(value)
    return None


class TelegramInput(ThreadlineInput):
    """Receives Telegram webhook updates (credentials: see ``credential_env``)."""

    channel = "telegram"
    holds_replies = True
    channel_label = "Telegram"
    credential_env = {
        "bot_token": "TELEGRAM_BOT_TOKEN",
        "secret_token": "TELEGRAM_SECRET_TOKEN",
        "api_base": "TELEGRAM_API_BASE",
    }
    credential_defaults = {"api_base": DEFAULT_API_BASE}

    def make_sender(self) -> OutboundSender:
        """A sender that masks the bot token (it is part of every URL)."""
        return OutboundSender(self.name(), secrets=[self.config["bot_token"]], retry_hint=retry_after_hint)

    def verify(self, inbound: Inbound, body: bytes) -> bool:
        """The secret token header must equal the configured one (constant time)."""
        return constant_time_equals(inbound.headers.get("x-telegram-bot-api-secret-token"), self.config["secret_token"])

    def parse(self, inbound: Inbound, payload: Any) -> List[Envelope]:
        """One update -> at most one envelope."""
        if not isinstance(payload, dict) or "update_id" not in payload:
            raise BadPayload('not a Telegram update (expected {"update_id": <integer>, ...})')
        update_id = str(shape.member(payload, "update_id", int, ""))
        query = shape.member(payload, "callback_query", dict, "")
        if query is not None:
            envelope = self._callback(update_id, query)
        elif payload.get("message") is not None:
            envelope = self._message(update_id, shape.member(payload, "message", dict, ""), "message", edited=False)
        elif payload.get("edited_message") is not None:
            envelope = self._message(update_id, shape.member(payload, "edited_message", dict, ""),
                                     "edited_message", edited=True)
        else:
            logger.info("telegram: update %s of kind %s ignored", update_id, sorted(set(payload) - {"update_id"}))
            return []
        return [envelope] if envelope else []

    def record_events(self, delivery: Delivery) -> None:
        """The user blocked (``kicked``) or unblocked the bot: a platform consent signal."""
        change = delivery.payload.get("my_chat_member") if isinstance(delivery.payload, dict) else None
        if not isinstance(change, dict):
            return
        user = change.get("from") if isinstance(change.get("from"), dict) else {}
        chat = change.get("chat") if isinstance(change.get("chat"), dict) else {}
        status = (change.get("new_chat_member") or {}).get("status") if isinstance(change.get("new_chat_member"), dict) else None
        if "id" not in user or chat.get("type", "private") != "private":
            return
        if status == "kicked":
            consent_signals.platform_opt_out(self.name(), str(user["id"]), "my_chat_member:kicked", self.redis_client())
        elif status == "member":
            consent_signals.platform_opt_in(self.name(), str(user["id"]), "my_chat_member:member", self.redis_client())

    def _base(self, update_id: str, holder: Dict[str, Any], path: str, chat: Any, **fields: Any) -> Optional[Envelope]:
        user = shape.member(holder, "from", dict, path)
        if user is None:  # optional in Telegram's contract (messages to channels)
            logger.info("telegram: update %s without a sender ignored", update_id)
            return None
        user_id = shape.member(user, "id", int, f"{path}.from", required=True)
        names = [user.get("first_name"), user.get("last_name")]
        envelope = Envelope(
            channel=self.name(),
            channel_user_id=str(user_id),
            message_id=update_id,
            locale=user.get("language_code"),
            profile_name=" ".join(n for n in names if isinstance(n, str) and n) or None,
            **fields,
        )
        chat = chat or {}
        envelope.extra.update({"chat_id": chat.get("id"), "username": user.get("username")})
        if user.get("is_bot") or (chat and chat.get("type") != "private"):
            envelope.kind = KIND_IGNORED  # other bots, groups and channels are not served
        return envelope

    def _callback(self, update_id: str, query: Dict[str, Any]) -> Optional[Envelope]:
        message = shape.member(query, "message", dict, "callback_query") or {}
        data = shape.member(query, "data", str, "callback_query")
        envelope = self._base(
            update_id, query, "callback_query", shape.member(message, "chat", dict, "callback_query.message"),
            kind=KIND_BUTTON if data else KIND_UNSUPPORTED, payload=data,
        )
        if envelope:
            envelope.extra.update({"type": "callback_query", "callback_query_id": query.get("id")})
        return envelope

    def _message(self, update_id: str, message: Dict[str, Any], path: str, edited: bool) -> Optional[Envelope]:
        chat = shape.member(message, "chat", dict, path, required=True)
        kind, text, extra = _content(message, path)
        phone = None
        contact = message.get("contact") if isinstance(message.get("contact"), dict) else None
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        if contact and contact.get("user_id") and contact.get("user_id") == sender.get("id"):
            # The user's own account: Telegram verified this number.
            phone = identity.normalise_phone(str(contact.get("phone_number") or ""))
        envelope = self._base(
            update_id, message, path, chat,
            kind=kind, text=text, phone=phone, phone_verified=bool(phone),
        )
        if envelope:
            envelope.extra.update(extra)
            envelope.extra["telegram_message_id"] = message.get("message_id")
            if edited:
                envelope.extra["edited"] = True
        return envelope

    async def before_processing(self, delivery: Delivery, envelope: Envelope) -> None:
        """Acknowledge a button tap so the client stops its spinner."""
        query_id = envelope.extra.get("callback_query_id")
        if query_id:
            output = self.get_output_channel()
            await output.api("answerCallbackQuery", {"callback_query_id": query_id})

    def get_output_channel(self) -> "TelegramOutput":
        """The Bot API sender for replies and proactive messages."""
        return TelegramOutput(self.config, self.sender, redis=self._redis)


def _content(message: Dict[str, Any], path: str):
    """(kind, text, extra) of one Telegram message."""
    text = shape.member(message, "text", str, path)
    if text is not None:
        start = _START.match(text)
        if start:
            payload = start.group(1)
            if payload and not re.fullmatch(r"\d{6}", payload):
                # A deep link: the payload is what the bot should read.
                return KIND_TEXT, payload, {"type": "text", "command": "start", "start_payload": payload}
            return KIND_TEXT, text, {"type": "text", "command": "start"}
        command = _COMMAND.match(text)
        extra = {"type": "text"}
        if command:
            extra["command"] = command.group(1).lower()
        return KIND_TEXT, text, extra
    location = message.get("location")
    if isinstance(location, dict) and "latitude" in location and "longitude" in location:
        return (
            KIND_LOCATION,
            f"location: {location['latitude']},{location['longitude']}",
            {"type": "location", "location": {"latitude": location["latitude"], "longitude": location["longitude"]}},
        )
    contact = message.get("contact")
    if isinstance(contact, dict) and contact.get("phone_number"):
        phone = identity.normalise_phone(str(contact["phone_number"])) or str(contact["phone_number"])
        return KIND_CONTACT, phone, {"type": "contact"}
    for field_name in MEDIA_FIELDS:
        if field_name in message:
            return KIND_MEDIA, message.get("caption"), {"type": field_name, "media": {"type": field_name}}
    for field_name in IGNORED_FIELDS:
        if field_name in message:
            return KIND_IGNORED, None, {"type": field_name}
    known = sorted(set(message) - {"message_id", "from", "chat", "date", "edit_date", "entities"})
    return KIND_UNSUPPORTED, None, {"type": known[0] if known else "unknown"}


class TelegramOutput(ThreadlineOutput):
    """Renders Rasa responses as Telegram Bot API calls."""

    channel = "telegram"

    def method_url(self, method: str) -> str:
        """``{api_base}/bot<token>/<method>``."""
        return f"{self.config['api_base'].rstrip('/')}/bot{self.config['bot_token']}/{method}"

    async def api(self, method: str, body: Dict[str, Any], record: bool = True):
        """Call one Bot API method with retries (see ``OutboundSender``)."""
        return await self.sender.post(self.method_url(method), body, record=record)

    async def _send_markdown(self, chat_id: str, text: str, reply_markup: Optional[Dict[str, Any]] = None) -> None:
        chunks = markup.split_text(text, TEXT_LIMIT) or [" "]
        for index, chunk in enumerate(chunks):
            body: Dict[str, Any] = {"chat_id": chat_id, "text": markup.to_telegram_v2(chunk), "parse_mode": "MarkdownV2"}
            if reply_markup and index == len(chunks) - 1:
                body["reply_markup"] = reply_markup
            result = await self.api("sendMessage", body, record=False)
            if result.ok:
                continue
            if result.status == 400 and "entities" in str(result.json):
                # Telegram could not parse our MarkdownV2 after all: send it plain.
                logger.warning("telegram: MarkdownV2 refused (%s); sending plain text", result.error)
                body["text"] = markup.plain_text(markup.parse(chunk))
                body.pop("parse_mode")
                await self.api("sendMessage", body)
            else:
                if result.status == 403:  # "Forbidden: bot was blocked by the user"
                    await run_sync(consent_signals.platform_opt_out, self.name(), str(chat_id), "sendMessage:403",
                                   self.redis_client())
                note_failure(result.error or "sendMessage failed", result.status)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Text as MarkdownV2, split at 4096 characters."""
        await self._send_markdown(await self.address(recipient_id), text)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        """Text with an inline keyboard (one row for up to three short titles)."""
        chat_id = await self.address(recipient_id)
        keys = []
        for button in buttons:
            if not isinstance(button, dict) or not button.get("title"):
                continue
            if button.get("url"):
                keys.append({"text": str(button["title"]), "url": str(button["url"])})
                continue
            payload = str(button.get("payload") or button["title"])
            data = await run_sync(alias_payload, self.name(), payload, CALLBACK_DATA_LIMIT, self.redis_client())
            keys.append({"text": str(button["title"]), "callback_data": data})
        if not keys:
            await self._send_markdown(chat_id, text)
            return
        one_row = len(keys) <= 3 and all(len(k["text"]) <= SHORT_TITLE for k in keys)
        keyboard = [keys] if one_row else [[key] for key in keys]
        await self._send_markdown(chat_id, text or "", {"inline_keyboard": keyboard})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """A photo by URL."""
        await self.api("sendPhoto", {"chat_id": await self.address(recipient_id), "photo": image})

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        """A document by URL (or ``{"url"/"link": ...}``)."""
        link = attachment.get("url") or attachment.get("link") if isinstance(attachment, dict) else attachment
        if not link:
            return
        await self.api("sendDocument", {"chat_id": await self.address(recipient_id), "document": str(link)})

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        """A Bot API call: ``{"method": "sendPoll", ...}`` (default sendMessage), or under ``"telegram"``."""
        body = dict(json_message.get("telegram") or json_message)
        body.pop("channel", None)
        method = str(body.pop("method", "sendMessage"))
        if method == "sendMessage" and not body.get("text"):
            logger.info("telegram: custom payload without text not sent: %s", list(body))
            return
        body.setdefault("chat_id", await self.address(recipient_id))
        await self.api(method, body)
