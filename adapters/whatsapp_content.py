"""What one WhatsApp `messages[]` element says, read defensively from untrusted JSON.

`read_content(message)` maps the message `type` and its `<type>` object to the typed fields of an
`InboundEvent` (kind, content type, text, attachments, ...). It returns None when the type is unknown or its
object is missing or malformed, so the caller turns the element into an UNKNOWN event instead of guessing.
The small `as_*` readers never raise: the webhook body is signed but its shape is not guaranteed, and one odd
value must not cost the rest of a batch that Meta would otherwise retry for days.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.events import (
    Attachment,
    ButtonReply,
    ContentType,
    EventKind,
    Location,
    PlatformError,
    Reaction,
    SharedContact,
)
from adapters.text_clean import clean_text

# Media arrive by id (fetched later through Graph); the platform's name is kept as the attachment type.
_MEDIA = {
    "image": ContentType.IMAGE,
    "video": ContentType.VIDEO,
    "audio": ContentType.AUDIO,  # voice notes too: audio with voice=true (the flag stays in raw)
    "document": ContentType.FILE,
    "sticker": ContentType.STICKER,
}
# Past year 300000 a "seconds" value is garbage, and its milliseconds would overflow a 64-bit column.
_MAX_SECONDS = 10**13


@dataclass(frozen=True, slots=True)
class MessageContent:
    """The typed part of a message; the envelope (ids, sender, time, context) is read by the caller."""

    kind: EventKind
    content_type: ContentType | None = None
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contacts: tuple[SharedContact, ...] = ()
    button: ButtonReply | None = None
    reaction: Reaction | None = None
    reply_to_message_id: str | None = None  # revoke/edit: the original message, which outranks `context.id`


def as_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


# Every string of an event is read through these two, and so made storable here (adapters/text_clean.py).
def as_str(value: Any) -> str | None:
    return clean_text(value) if isinstance(value, str) else None


def as_id(value: Any) -> str | None:
    """Ids are always str; Meta sends strings, but a number is still recognisably an id."""
    if isinstance(value, str):
        return clean_text(value) if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 20:
        return int(value)
    return None


def seconds_to_ms(value: Any) -> int | None:
    """WhatsApp timestamps are unix seconds as strings; None when the value is not a plausible time."""
    if isinstance(value, float) and math.isfinite(value) and 0 <= value < _MAX_SECONDS:
        return int(value * 1000)
    seconds = as_int(value)
    if seconds is None or not 0 <= seconds < _MAX_SECONDS:
        return None
    return seconds * 1000


def read_errors(value: Any) -> tuple[PlatformError, ...]:
    """`errors[]` of a message, status or value; `error_data.details` stands in for a missing message."""
    found = []
    for item in value if isinstance(value, list) else ():
        error = as_mapping(item)
        if error is None:
            continue
        details = as_str((as_mapping(error.get("error_data")) or {}).get("details"))
        found.append(
            PlatformError(
                as_int(error.get("code")), as_str(error.get("title")), as_str(error.get("message")) or details
            )
        )
    return tuple(found)


def read_content(message: Mapping[str, Any]) -> MessageContent | None:
    kind = as_str(message.get("type"))
    if kind in _MEDIA:
        return _media(kind, message.get(kind))
    reader = _READERS.get(kind or "")
    return None if reader is None else reader(message.get(kind or ""))


def _media(kind: str, value: Any) -> MessageContent | None:
    media = as_mapping(value)
    media_id = None if media is None else as_id(media.get("id"))
    if media is None or media_id is None:  # without an id there is nothing to fetch
        return None
    caption = as_str(media.get("caption"))
    attachment = Attachment(
        type=kind,
        media_id=media_id,
        mime_type=as_str(media.get("mime_type")),
        caption=caption,
        filename=as_str(media.get("filename")),
    )
    return MessageContent(EventKind.MESSAGE, _MEDIA[kind], text=caption, attachments=(attachment,))


def _text(value: Any) -> MessageContent | None:
    body = as_str((as_mapping(value) or {}).get("body"))
    return None if body is None else MessageContent(EventKind.MESSAGE, ContentType.TEXT, text=body)


def _coordinate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _location(value: Any) -> MessageContent | None:
    place = as_mapping(value) or {}
    latitude, longitude = _coordinate(place.get("latitude")), _coordinate(place.get("longitude"))
    if latitude is None or longitude is None:
        return None
    location = Location(latitude, longitude, as_str(place.get("name")), as_str(place.get("address")))
    return MessageContent(EventKind.MESSAGE, ContentType.LOCATION, location=location)


def _values(items: Any, key: str) -> tuple[str, ...]:
    """`phones[].phone` / `emails[].email`, skipping entries that are not what the docs describe."""
    found = (as_str((as_mapping(item) or {}).get(key)) for item in (items if isinstance(items, list) else ()))
    return tuple(value for value in found if value)


def _contacts(value: Any) -> MessageContent | None:
    if not isinstance(value, list):
        return None
    shared = []
    for item in value:
        card = as_mapping(item)
        if card is None:
            continue
        name = as_mapping(card.get("name")) or {}
        parts = (as_str(name.get("first_name")), as_str(name.get("last_name")))
        formatted = as_str(name.get("formatted_name")) or " ".join(part for part in parts if part)
        shared.append(
            SharedContact(formatted, _values(card.get("phones"), "phone"), _values(card.get("emails"), "email"))
        )
    return MessageContent(EventKind.MESSAGE, ContentType.CONTACTS, contacts=tuple(shared))


def _interactive(value: Any) -> MessageContent | None:
    interactive = as_mapping(value) or {}
    subtype = as_str(interactive.get("type"))
    reply = as_mapping(interactive.get(subtype or ""))
    if reply is None:
        return None
    if subtype in ("button_reply", "list_reply"):
        button = ButtonReply(payload=as_id(reply.get("id")), title=as_str(reply.get("title")))
    elif subtype == "nfm_reply":
        # A WhatsApp Flow completed: the answers are the `response_json` string, left in raw for the core.
        button = ButtonReply(payload=as_str(reply.get("name")), title=as_str(reply.get("body")))
    else:
        return None
    return MessageContent(EventKind.MESSAGE, ContentType.BUTTON, text=button.title, button=button)


def _button(value: Any) -> MessageContent | None:
    tapped = as_mapping(value)
    if tapped is None:
        return None
    button = ButtonReply(payload=as_str(tapped.get("payload")), title=as_str(tapped.get("text")))
    return MessageContent(EventKind.MESSAGE, ContentType.BUTTON, text=button.title, button=button)


def _reaction(value: Any) -> MessageContent | None:
    reacted = as_mapping(value)
    if reacted is None:
        return None
    emoji = as_str(reacted.get("emoji")) or None  # absent or "" both mean the reaction was removed
    reaction = Reaction(target_message_id=as_id(reacted.get("message_id")), emoji=emoji, removed=emoji is None)
    return MessageContent(EventKind.REACTION, reaction=reaction)


def _order(value: Any) -> MessageContent | None:
    order = as_mapping(value)
    return (
        None if order is None else MessageContent(EventKind.MESSAGE, ContentType.ORDER, text=as_str(order.get("text")))
    )


def _system(value: Any) -> MessageContent | None:
    system = as_mapping(value)
    return None if system is None else MessageContent(EventKind.SYSTEM, text=as_str(system.get("body")))


def _unsupported(value: Any) -> MessageContent:
    # The platform itself could not show the message; its `errors[]` (131051) are read by the caller.
    return MessageContent(EventKind.UNSUPPORTED)


def _revoke(value: Any) -> MessageContent | None:
    original = as_id((as_mapping(value) or {}).get("original_message_id"))
    return None if original is None else MessageContent(EventKind.DELETED, reply_to_message_id=original)


def _edit(value: Any) -> MessageContent | None:
    edit = as_mapping(value) or {}
    original = as_id(edit.get("original_message_id"))
    if original is None:
        return None
    inner = as_mapping(edit.get("message"))
    # Only a plain message can be the new version; never recurse into an edit of an edit.
    new = read_content(inner) if inner is not None and inner.get("type") not in ("edit", "revoke") else None
    if new is None or new.kind is not EventKind.MESSAGE:
        return MessageContent(EventKind.EDITED, reply_to_message_id=original)
    return MessageContent(
        EventKind.EDITED,
        new.content_type,
        new.text,
        new.attachments,
        new.location,
        new.contacts,
        new.button,
        reply_to_message_id=original,
    )


def _request_welcome(value: Any) -> MessageContent:
    # The customer opened the chat for the first time (no text): a MESSAGE so the bot may greet them;
    # the core tells it apart by content type OTHER with no text, attachment or button.
    return MessageContent(EventKind.MESSAGE, ContentType.OTHER)


_READERS: Mapping[str, Callable[[Any], MessageContent | None]] = {
    "text": _text,
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
    "unsupported": _unsupported,
    "unknown": _unsupported,  # the older name of `unsupported`, still sent by some API versions
    "revoke": _revoke,
    "edit": _edit,
    "request_welcome": _request_welcome,
}
