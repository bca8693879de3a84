"""The inbox codec as it was before pydantic's TypeAdapter (adapters/events.py at 0966e5a), verbatim.

Kept for two readers: the codec's compatibility tests (rows written by either codec read the same with the other)
and bench/codec.py, which measures the new codec next to this one.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from adapters.events import (
    Attachment,
    ButtonReply,
    ContentType,
    DeliveryStatus,
    EventKind,
    InboundEvent,
    Location,
    Platform,
    PlatformError,
    Reaction,
    Referral,
    SharedContact,
)


def previous_event_to_json(event: InboundEvent) -> str:
    return json.dumps(_plain(event), ensure_ascii=True, separators=(",", ":"), default=str)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def previous_event_from_json(text: str) -> InboundEvent:
    data = json.loads(text)

    def many(cls: type, items: Any) -> tuple[Any, ...]:
        return tuple(cls(**item) for item in items or ())

    def one(cls: type, item: Any) -> Any:
        return None if item is None else cls(**item)

    status = data.get("status")
    return InboundEvent(
        platform=Platform(data["platform"]),
        kind=EventKind(data["kind"]),
        channel_external_id=data["channel_external_id"],
        customer_id=data["customer_id"],
        event_key=data["event_key"],
        message_id=data["message_id"],
        timestamp_ms=data["timestamp_ms"],
        content_type=None if data.get("content_type") is None else ContentType(data["content_type"]),
        text=data.get("text"),
        attachments=many(Attachment, data.get("attachments")),
        location=one(Location, data.get("location")),
        contacts=tuple(
            SharedContact(c["name"], tuple(c.get("phones", ())), tuple(c.get("emails", ())))
            for c in data.get("contacts") or ()
        ),
        button=one(ButtonReply, data.get("button")),
        reaction=one(Reaction, data.get("reaction")),
        status=None
        if status is None
        else DeliveryStatus(status["status"], status["recipient_id"], many(PlatformError, status.get("errors"))),
        referral=one(Referral, data.get("referral")),
        reply_to_message_id=data.get("reply_to_message_id"),
        app_id=data.get("app_id"),
        echo_metadata=data.get("echo_metadata"),
        customer_name=data.get("customer_name"),
        standby=bool(data.get("standby")),
        errors=many(PlatformError, data.get("errors")),
        raw=data.get("raw") or {},
    )
