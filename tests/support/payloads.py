"""Builders of platform webhook deliveries, shaped like the published payloads.

For end-to-end tests that post to the real webhooks::

    body = whatsapp_delivery(whatsapp_text_message("15551230001", "hi", "wamid.1"),
                             contacts=[whatsapp_contact("15551230001", "Ana")])
    raw, headers = signed_whatsapp_request(body, app_secret)
    requests.post(f"{base}/webhooks/whatsapp/webhook", data=raw, headers=headers)

or, for the common single text message, ``whatsapp_text_payload(wa_id, text, msg_id)``.
"""
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

BUSINESS_ACCOUNT_ID = "102290129340398"
BUSINESS_PHONE_NUMBER_ID = "106540352242922"
BUSINESS_DISPLAY_NUMBER = "15550783881"

# ------------------------------------------------------------------- WhatsApp


def whatsapp_contact(wa_id: Optional[str], name: str = "Test Customer", user_id: Optional[str] = None,
                     username: Optional[str] = None) -> Dict[str, Any]:
    """A ``contacts[]`` item: profile name, wa_id and/or business-scoped user id."""
    profile: Dict[str, Any] = {"name": name}
    if username:
        profile["username"] = username
    contact: Dict[str, Any] = {"profile": profile}
    if wa_id:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    return contact


def _message(wa_id: Optional[str], msg_id: str, kind: str, body: Dict[str, Any],
             user_id: Optional[str] = None, context: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"id": msg_id, "timestamp": str(int(time.time())), "type": kind, kind: body}
    if wa_id:
        message["from"] = wa_id
    if user_id:
        message["from_user_id"] = user_id
    if context:
        message["context"] = context
    return message


def whatsapp_text_message(wa_id: Optional[str], text: str, msg_id: str, user_id: Optional[str] = None) -> Dict:
    """A ``messages[]`` item of type text."""
    return _message(wa_id, msg_id, "text", {"body": text}, user_id)


def whatsapp_button_reply_message(wa_id: str, button_id: str, title: str, msg_id: str) -> Dict:
    """A tap on an interactive reply button."""
    body = {"type": "button_reply", "button_reply": {"id": button_id, "title": title}}
    return _message(wa_id, msg_id, "interactive", body, context={"from": BUSINESS_DISPLAY_NUMBER, "id": "wamid.prev"})


def whatsapp_list_reply_message(wa_id: str, row_id: str, title: str, msg_id: str, description: str = "") -> Dict:
    """A tap on a row of an interactive list."""
    reply = {"id": row_id, "title": title}
    if description:
        reply["description"] = description
    body = {"type": "list_reply", "list_reply": reply}
    return _message(wa_id, msg_id, "interactive", body, context={"from": BUSINESS_DISPLAY_NUMBER, "id": "wamid.prev"})


def whatsapp_template_button_message(wa_id: str, payload: str, text: str, msg_id: str) -> Dict:
    """A tap on a template's quick-reply button (type ``button``)."""
    return _message(wa_id, msg_id, "button", {"payload": payload, "text": text},
                    context={"from": BUSINESS_DISPLAY_NUMBER, "id": "wamid.template"})


def whatsapp_location_message(wa_id: str, latitude: float, longitude: float, msg_id: str, **place: str) -> Dict:
    """A shared location (optionally with ``name`` and ``address``)."""
    return _message(wa_id, msg_id, "location", {"latitude": latitude, "longitude": longitude, **place})


def whatsapp_media_message(wa_id: str, kind: str, msg_id: str, caption: Optional[str] = None) -> Dict:
    """An image/audio/video/document/sticker message."""
    body = {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "HgfH7zn0Rm0fnEi1M3ps6xd3p80XP4wuvNhuJjsiLRA="}
    if caption:
        body["caption"] = caption
    return _message(wa_id, msg_id, kind, body)


def whatsapp_unsupported_message(wa_id: str, msg_id: str) -> Dict:
    """A message type the Cloud API itself does not support."""
    message = _message(wa_id, msg_id, "unsupported", {})
    del message["unsupported"]
    message["errors"] = [{"code": 131051, "title": "Message type unknown",
                          "message": "Message type unknown",
                          "error_data": {"details": "Message type is currently not supported."}}]
    return message


def whatsapp_status(msg_id: str, status: str, recipient_id: str, errors: Optional[List[Dict]] = None) -> Dict:
    """A ``statuses[]`` item for one of our messages."""
    item: Dict[str, Any] = {"id": msg_id, "status": status, "timestamp": str(int(time.time())),
                            "recipient_id": recipient_id}
    if status != "failed":
        item["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        item["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    if errors:
        item["errors"] = errors
    return item


def whatsapp_delivery(*messages: Dict[str, Any], contacts: Iterable[Dict[str, Any]] = (),
                      statuses: Iterable[Dict[str, Any]] = (),
                      phone_number_id: str = BUSINESS_PHONE_NUMBER_ID) -> Dict[str, Any]:
    """A whole notification: one entry, one ``messages`` change."""
    value: Dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS_DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    contacts, statuses = list(contacts), list(statuses)
    if contacts:
        value["contacts"] = contacts
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": BUSINESS_ACCOUNT_ID, "changes": [{"value": value, "field": "messages"}]}]}


def whatsapp_text_payload(wa_id: str, text: str, msg_id: str, name: str = "Test Customer",
                          phone_number_id: str = BUSINESS_PHONE_NUMBER_ID) -> Dict[str, Any]:
    """A delivery of one text message from ``wa_id``."""
    return whatsapp_delivery(whatsapp_text_message(wa_id, text, msg_id),
                             contacts=[whatsapp_contact(wa_id, name)], phone_number_id=phone_number_id)


def sign_whatsapp(body: Union[bytes, str], secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body``."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return "sha256=" + hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def signed_whatsapp_request(payload: Any, secret: str) -> Tuple[bytes, Dict[str, str]]:
    """(raw body, headers) ready to post to ``/webhooks/whatsapp/webhook``."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": sign_whatsapp(raw, secret)}


# ------------------------------------------------------------------- Telegram


def telegram_user(user_id: int, first_name: str = "Test", last_name: Optional[str] = None,
                  language_code: Optional[str] = "en", username: Optional[str] = None) -> Dict[str, Any]:
    """A Telegram ``User`` object."""
    user: Dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    for key, value in (("last_name", last_name), ("username", username), ("language_code", language_code)):
        if value:
            user[key] = value
    return user


def _telegram_message(user: Dict[str, Any], message_id: int, **content: Any) -> Dict[str, Any]:
    chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name")}
    if user.get("username"):
        chat["username"] = user["username"]
    return {"message_id": message_id, "from": user, "chat": chat, "date": int(time.time()), **content}


def telegram_text_update(user_id: int, text: str, update_id: int, message_id: int = 1, **user: Any) -> Dict:
    """An update with a text message (commands such as ``/start`` get their entity)."""
    content: Dict[str, Any] = {"text": text}
    if text.startswith("/"):
        content["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
    return {"update_id": update_id, "message": _telegram_message(telegram_user(user_id, **user), message_id, **content)}


def telegram_edited_update(user_id: int, text: str, update_id: int, message_id: int = 1) -> Dict:
    """An update with an edited text message."""
    message = _telegram_message(telegram_user(user_id), message_id, text=text)
    message["edit_date"] = int(time.time())
    return {"update_id": update_id, "edited_message": message}


def telegram_callback_update(user_id: int, data: str, update_id: int, query_id: str = "4382bfdwdsb323b2d9",
                             message_id: int = 1) -> Dict:
    """An update with a callback query (a tap on an inline keyboard button)."""
    user = telegram_user(user_id)
    bot = {"id": 5000000001, "is_bot": True, "first_name": "Threadline", "username": "threadline_bot"}
    message = _telegram_message(user, message_id, text="Pick one")
    message["from"] = bot
    return {"update_id": update_id, "callback_query": {
        "id": query_id, "from": user, "message": message, "chat_instance": "-7413521283928716231", "data": data}}


def telegram_update_with(user_id: int, update_id: int, message_id: int = 1, **content: Any) -> Dict:
    """An update whose message carries arbitrary ``content`` (photo, location, contact...)."""
    return {"update_id": update_id, "message": _telegram_message(telegram_user(user_id), message_id, **content)}


def telegram_headers(secret_token: str) -> Dict[str, str]:
    """Headers Telegram sends with a webhook configured with ``secret_token``."""
    return {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret_token}
