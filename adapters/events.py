"""Typed inbound events: what every Meta delivery becomes at the adapter edge.

The core never indexes a Meta dict. A parser turns one webhook body into a list of `InboundEvent`s, one per
element of every `entry[]`, `messaging[]`/`standby[]` and `changes[].value.messages[]/statuses[]/errors[]`.
Shapes a parser does not recognise become `EventKind.UNKNOWN` events carrying the raw element, so they are
acknowledged, counted and kept for inspection instead of being dropped or failing the delivery.
`event_to_json` / `event_from_json` are the inbox codec: pydantic's TypeAdapter over these same dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError


class Platform(StrEnum):
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"


class EventKind(StrEnum):
    MESSAGE = "message"  # a customer wrote (text or not): may deserve a reply
    POSTBACK = "postback"  # a button, ice breaker or Get Started tap: answered like a message with its title
    REACTION = "reaction"  # a customer reacted to (or un-reacted from) a message
    READ = "read"  # the customer read up to a point (Messenger watermark, Instagram mid)
    DELIVERY = "delivery"  # Messenger delivery receipt
    STATUS = "status"  # WhatsApp status of one of our messages: sent, delivered, read, failed, played
    ECHO = "echo"  # a message sent from the business side: by us, another app, or a human in the inbox
    REFERRAL = "referral"  # the customer re-entered a thread through a link or an ad
    HANDOVER = "handover"  # thread control passed, taken or requested (Messenger handover protocol)
    DELETED = "deleted"  # the customer deleted or revoked a message
    EDITED = "edited"  # the customer edited a message (WhatsApp)
    SYSTEM = "system"  # WhatsApp system message, e.g. the customer changed number
    ERROR = "error"  # WhatsApp value-level errors (no message, no status)
    UNSUPPORTED = "unsupported"  # a message type the platform itself cannot show us
    UNKNOWN = "unknown"  # a shape we do not know: kept raw for inspection, never answered


class ContentType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"  # Messenger/Instagram file, WhatsApp document
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    SHARE = "share"  # Instagram share, reel, post
    STORY_MENTION = "story_mention"
    BUTTON = "button"  # quick reply, interactive button/list reply, template button
    ORDER = "order"
    TEMPLATE = "template"
    FALLBACK = "fallback"  # Messenger link preview ("fallback" attachment)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Attachment:
    type: str  # the platform's own attachment/media type name, e.g. "image", "ig_reel", "document"
    url: str | None = None  # Messenger/Instagram CDN URL (expires; never stored beyond the raw event)
    media_id: str | None = None  # WhatsApp media id (fetch through Graph)
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class SharedContact:
    name: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ButtonReply:
    """A tapped button: quick reply, postback, interactive button/list reply, template button."""

    payload: str | None  # what the business put behind the button (id / payload)
    title: str | None  # what the customer saw and tapped


@dataclass(frozen=True, slots=True)
class Reaction:
    target_message_id: str | None
    emoji: str | None
    removed: bool


@dataclass(frozen=True, slots=True)
class PlatformError:
    code: int | None
    title: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    status: str  # sent | delivered | read | failed | played
    recipient_id: str | None
    errors: tuple[PlatformError, ...] = ()


@dataclass(frozen=True, slots=True)
class Referral:
    source: str | None
    type: str | None
    ref: str | None = None
    ad_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboundEvent:
    platform: Platform
    kind: EventKind
    # The business side the event belongs to: Page id, Instagram account id, or WhatsApp phone_number_id.
    channel_external_id: str
    # The customer: PSID, IGSID or wa_id. For echoes (sent by the business) it is the recipient customer.
    customer_id: str | None
    # Unique per event within the channel, stable across Meta's retries: the dedupe key of the inbox.
    # mid / wamid for messages; a composite (e.g. "status:<wamid>:<status>") for receipts and statuses.
    event_key: str
    message_id: str | None  # the platform's message id (mid / wamid) where there is one
    timestamp_ms: int  # when the platform says it happened (WhatsApp seconds are converted)
    content_type: ContentType | None = None
    text: str | None = None  # message text, or a caption
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contacts: tuple[SharedContact, ...] = ()
    button: ButtonReply | None = None
    reaction: Reaction | None = None
    status: DeliveryStatus | None = None
    referral: Referral | None = None
    reply_to_message_id: str | None = None  # the message this one quotes or replies to
    app_id: str | None = None  # echoes: the app that sent it (ours, another app, or the Page inbox)
    echo_metadata: str | None = None  # echoes: the `metadata` the sender attached (ours: adapters/replies.ECHO_MARK)
    customer_name: str | None = None  # WhatsApp profile name, when the platform sends it
    standby: bool = False  # Messenger/Instagram standby channel: another app owns the thread; never answer
    errors: tuple[PlatformError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the element as received

    @property
    def answerable(self) -> bool:
        """Does this event deserve a bot reply? Customer messages and button taps, outside standby."""
        return self.kind in (EventKind.MESSAGE, EventKind.POSTBACK) and not self.standby and bool(self.customer_id)


# The inbox codec: pydantic validates and serialises these very dataclasses from their annotations, in Rust.
# Built once, at import (CPU only, a few milliseconds), after every class it refers to exists.
_CODEC: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)


def event_to_json(event: InboundEvent) -> str:
    """The event as stored in the inbox: plain JSON, so a worker in another process can rebuild it.

    UTF-8, not ASCII-escaped: the parsers clean every typed string (adapters/text_clean.py), so the row is valid
    text. `raw`, the payload as received, may still hold a lone surrogate, which has no UTF-8 form: pydantic refuses
    it, and such an event (or one whose `raw` is a Mapping but not a dict) is written by the standard library with
    ASCII escapes instead, as every event was before. NaN and Infinity in `raw` (json.loads accepts them, JSON does
    not) are written as null.
    """
    try:
        # warnings=False: a value that differs from its annotation (a list for a tuple) is written all the same
        # rather than warned about on the webhook path.
        return _CODEC.dump_json(event, warnings=False).decode()
    except PydanticSerializationError:
        plain = _CODEC.dump_python(event, warnings=False)  # python mode: nested dataclasses as dicts, strings as is
        return json.dumps(plain, ensure_ascii=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    # `raw` is any Mapping by contract; anything else json.dumps cannot write is kept as its str, as it always was.
    return dict(value) if isinstance(value, Mapping) else str(value)


def event_from_json(text: str) -> InboundEvent:
    """An event stored by `event_to_json`, by this version or an earlier one (same field names and values)."""
    try:
        return _CODEC.validate_json(text)
    except ValidationError as exc:
        if not any(error["type"] == "json_invalid" for error in exc.errors()):
            raise
    # pydantic's parser refuses an escaped lone surrogate ("\ud800"), which the ASCII path above and the encoder
    # before it wrote for one; json.loads reads it, and the same validation follows.
    return _CODEC.validate_python(json.loads(text))
