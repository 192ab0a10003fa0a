"""WhatsApp Cloud API, receiving (``whatsapp``): ``GET`` and ``POST /webhooks/whatsapp/webhook``.

Meta signs every delivery with ``X-Hub-Signature-256`` (HMAC-SHA256 of
the raw body under the app secret); ``entry[].changes[].value`` carries
``messages`` (forwarded to Rasa in order), ``contacts`` (profile names) and
``statuses`` (sent/delivered/read/failed of our own messages, recorded in Redis,
never shown to the bot). A ``user_preferences`` change (a user stopping or
resuming marketing messages) records the marketing consent
(``connectors.consent``). A user is their ``wa_id`` (a phone number WhatsApp has
verified) or, for users who hide their number behind a username, their
business-scoped user id (BSUID, ``from_user_id`` / ``user_id``). A bare
number answering options sent as a numbered list becomes that option's payload.
"""
import hmac
import json
import logging
import time
from typing import Any, Dict, List, Optional, Tuple

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

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
    constant_time_equals,
    iter_dicts,
)
from connectors import shape
from connectors.whatsapp.common import (
    IGNORED_TYPES,
    MEDIA_TYPES,
    STATUS_TTL,
    _NUMBER_REPLY,
    DEFAULT_API_BASE,
    _choices_key,
    _digits,
    _status_key,
    _window_key,
    signature_for,
    window_seconds,
)
from connectors import consent as consent_signals
from connectors.whatsapp.outbound import WhatsAppOutput
from threadline import consent, identity

logger = logging.getLogger(__name__)

class WhatsAppInput(ThreadlineInput):
    """Receives WhatsApp Cloud API webhooks (credentials: see ``credential_env``)."""

    channel = "whatsapp"
    holds_replies = True
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

    def _changes(self, payload: Any) -> List[Tuple[str, Dict[str, Any]]]:
        """(path, value) of every ``messages`` change, the shape checked (BadPayload names the path)."""
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise BadPayload("not a WhatsApp Business Account notification "
                             '(expected {"object": "whatsapp_business_account", "entry": [...]})')
        values = []
        for entry_path, entry in shape.objects(payload, "entry", "", required=True):
            for change_path, change in shape.objects(entry, "changes", entry_path):
                value = shape.member(change, "value", dict, change_path)
                if shape.member(change, "field", str, change_path) in (None, "messages") and value is not None:
                    values.append((f"{change_path}.value", value))
        return values

    def record_preferences(self, delivery: Delivery) -> None:
        """``user_preferences``: a user stopped or resumed marketing messages."""
        for entry in iter_dicts(delivery.payload.get("entry") if isinstance(delivery.payload, dict) else None):
            for change in iter_dicts(entry.get("changes")):
                value = change.get("value") if isinstance(change.get("value"), dict) else {}
                for preference in iter_dicts(value.get("user_preferences")):
                    user = preference.get("wa_id") or preference.get("user_id")
                    if not user or preference.get("category") != "marketing_messages":
                        continue
                    signal = f"user_preferences:{preference.get('value')}"
                    if preference.get("value") == "stop":
                        consent_signals.platform_opt_out(self.name(), str(user), signal, self.redis_client(),
                                                         purposes=(consent.MARKETING,))
                    elif preference.get("value") == "resume":
                        consent_signals.platform_opt_in(self.name(), str(user), signal, self.redis_client(),
                                                        purpose=consent.MARKETING)

    def record_events(self, delivery: Delivery) -> None:
        """Record ``statuses`` of our own messages (not shown to the bot) and marketing preferences."""
        self.record_preferences(delivery)
        redis = None
        for _, value in self._changes(delivery.payload):
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
        for path, value in self._changes(payload):
            metadata = shape.member(value, "metadata", dict, path) or {}
            number_id = str(metadata.get("phone_number_id") or "")
            business_number = str(metadata.get("display_phone_number") or "")
            contacts = [contact for _, contact in shape.objects(value, "contacts", path)]
            for message_path, message in shape.objects(value, "messages", path):
                envelope = self._envelope(message, contacts, message_path)
                if number_id and number_id != self.config["phone_number_id"]:
                    logger.info("whatsapp: message for another number (%s) ignored", number_id)
                    envelope.kind = KIND_IGNORED
                elif business_number and _digits(message.get("from")) == _digits(business_number):
                    envelope.kind = KIND_IGNORED  # an echo of our own message
                envelopes.append(envelope)
        return envelopes

    def _envelope(self, message: Dict[str, Any], contacts: List[Dict[str, Any]], path: str) -> Envelope:
        message_id = shape.member(message, "id", str, path, required=True)
        wa_id = shape.member(message, "from", str, path)
        bsuid = shape.member(message, "from_user_id", str, path)
        contact = _contact_for(contacts, wa_id, bsuid)
        bsuid = bsuid or contact.get("user_id")
        wa_id = wa_id or contact.get("wa_id")
        user_id = wa_id or bsuid
        if not user_id:
            raise BadPayload(f"{path} has no sender (from or from_user_id)")
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        kind, text, payload, extra = _content(message, path)
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


def _contact_for(contacts: List[Dict[str, Any]], wa_id: Any, bsuid: Any) -> Dict[str, Any]:
    for contact in contacts:
        if (wa_id and contact.get("wa_id") == wa_id) or (bsuid and contact.get("user_id") == bsuid):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


_READ_TYPES = {"text", "interactive", "button", "location", *MEDIA_TYPES}


def _content(message: Dict[str, Any], path: str):
    """(kind, text, payload, extra) of one WhatsApp message object."""
    kind_name = shape.member(message, "type", str, path)
    if kind_name in _READ_TYPES:
        body = shape.member(message, kind_name, dict, path) or {}
    else:  # a type we do not read: its body is not ours to judge
        body = message.get(kind_name) if isinstance(message.get(kind_name), dict) else {}
    if kind_name == "text":
        return KIND_TEXT, shape.member(body, "body", str, f"{path}.text"), None, {}
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
