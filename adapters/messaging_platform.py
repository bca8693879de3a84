"""Messenger Platform webhook walking, shared by Messenger (`object: "page"`) and Instagram (`object: "instagram"`).

Both deliver `{"object", "entry": [{"id", "time", "messaging": [...], "standby": [...], "changes": [...]}]}` with
the same event objects. `parse_body` yields one `InboundEvent` per element of every entry's `messaging[]`,
`standby[]` (`standby=True`: another app owns the thread, never answer) and `changes[]` (feed, comments...: UNKNOWN,
unless the `Dialect` declares the `field` messaging-shaped). `messenger.py` / `instagram.py` hold what differs.
Sides: `channel_external_id` = the business = `recipient.id` (else `entry.id`); `customer_id` = `sender.id` (PSID /
IGSID). Echoes (sent by the business) swap the two.

`event_key`, the inbox dedupe key (unique per event within a channel, identical across Meta's retries):
    message, echo, unsupported, postback with mid   <mid>
    postback without mid                            postback:<sender>:<timestamp_ms>:<payload>
    reaction                                        reaction:<mid>:<action>:<reaction or emoji>:<sender>
    read                                            read:<sender>:<watermark or mid>
    delivery (Messenger)                            delivery:<sender>:<watermark>
    referral, handover (Messenger)                  <kind>:<sender>:<timestamp_ms>
    deleted                                         deleted:<mid>
    edited (Messenger `message_edit`)               edited:<mid>:<num_edit>
    unknown                                         unknown:<sha256 of the element's canonical JSON>
A missing part inside a composite key is written as "". When the part a key rests on is missing (a message without
`mid`, a read with neither watermark nor mid) the key is `<kind>:<sha256 of the element's canonical JSON>`: Meta
resends the same element, so it is still stable. Canonical JSON = `json.dumps(sort_keys=True, separators=(",", ":"))`.

Never raises. A body that is not a mapping or has no `entry` list gives one UNKNOWN event (raw = the body, or
`{"body": ...}`), like the WhatsApp parser; `{"entry": []}` gives `[]`. An entry, element or event object of the
wrong type gives one UNKNOWN (a non-mapping is wrapped under the key it came from, e.g. `{"element": ...}`),
channel = entry id or "". Ids are always strings (Meta sends `app_id`, `sticker_id`, watermarks as numbers).
`timestamp_ms`: the element's `timestamp`, else the entry's `time` (number, numeric or ISO-8601 string; below
10^12 it is seconds), else 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from adapters.events import Attachment, ButtonReply, ContentType, EventKind, InboundEvent, Platform, Reaction, Referral
from adapters.text_clean import clean_text

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SECONDS_BELOW = 10**12  # epoch ms passed 10^12 in 2001; anything smaller is a seconds value
_MAX_MS = 10**15  # ~ year 33658: larger numbers are garbage, not times


Handler = Callable[["Element", Mapping[str, Any]], InboundEvent]  # (element, its event object) -> event


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the products that share the Messenger Platform envelope."""

    platform: Platform
    content_types: Mapping[str, ContentType]  # attachment `type` -> message content type (else OTHER)
    message_change_fields: frozenset[str] = frozenset()  # `changes[].field` values whose `value` is an element
    story_replies: bool = False  # Instagram `reply_to.story`: kept as an attachment of type "story"
    # Event objects only this product sends, tried after the shared ones.
    handlers: Mapping[str, Handler] = field(default_factory=lambda: _EMPTY)


def parse_body(payload: object, dialect: Dialect) -> list[InboundEvent]:
    """Every event of one webhook body, in delivery order."""
    entries = payload.get("entry") if isinstance(payload, Mapping) else None
    if not isinstance(entries, list):
        return [_unknown(_Entry(dialect, "", None), payload if isinstance(payload, Mapping) else {"body": payload})]
    events: list[InboundEvent] = []
    for entry in entries:
        events.extend(_parse_entry(entry, dialect))
    return events


@dataclass(frozen=True, slots=True)
class _Entry:
    dialect: Dialect
    id: str
    time: object


@dataclass(frozen=True, slots=True)
class Element:
    """One messaging-shaped element and what every event built from it shares."""

    entry: _Entry
    raw: Mapping[str, Any]
    standby: bool
    sender: str | None
    recipient: str | None
    timestamp_ms: int

    def event(
        self, kind: EventKind, key: str, *, echo: bool = False, message_id: str | None = None, **fields: Any
    ) -> InboundEvent:
        business, customer = (self.sender, self.recipient) if echo else (self.recipient, self.sender)
        return InboundEvent(
            platform=self.entry.dialect.platform,
            kind=kind,
            channel_external_id=business or self.entry.id,
            customer_id=customer,
            event_key=key,
            message_id=message_id,
            timestamp_ms=self.timestamp_ms,
            standby=self.standby,
            raw=self.raw,
            **fields,
        )

    def fallback_key(self, kind: EventKind) -> str:
        return f"{kind}:{_digest(self.raw)}"


def _parse_entry(entry: object, dialect: Dialect) -> list[InboundEvent]:
    if not isinstance(entry, Mapping):
        return [_unknown(_Entry(dialect, "", None), {"entry": entry})]
    ctx = _Entry(dialect, as_id(entry.get("id")) or "", entry.get("time"))
    events: list[InboundEvent] = []
    seen_any = False
    for key, standby in (("messaging", False), ("standby", True), ("changes", False)):
        elements = entry.get(key)
        if elements is None:
            continue
        seen_any = True
        if not isinstance(elements, list):
            events.append(_unknown(ctx, {key: elements}, standby))
            continue
        parse_one = _parse_change if key == "changes" else _parse_element
        events.extend(parse_one(element, ctx, standby) for element in elements)
    if not seen_any:  # an entry with nothing we know how to walk: keep it visible rather than drop it
        events.append(_unknown(ctx, entry))
    return events


def _parse_change(change: object, ctx: _Entry, standby: bool) -> InboundEvent:
    name = change.get("field") if isinstance(change, Mapping) else None
    value = change.get("value") if isinstance(change, Mapping) else None
    if isinstance(name, str) and name in ctx.dialect.message_change_fields and isinstance(value, Mapping):
        return _parse_element(value, ctx, standby)
    return _unknown(ctx, change if isinstance(change, Mapping) else {"change": change}, standby)


def _parse_element(element: object, ctx: _Entry, standby: bool) -> InboundEvent:
    if not isinstance(element, Mapping):
        return _unknown(ctx, {"element": element}, standby)
    handlers = (_HANDLERS, ctx.dialect.handlers)
    key, handler = next(((k, h) for table in handlers for k, h in table.items() if k in element), (None, None))
    body = element.get(key) if key else None
    if handler is None or not isinstance(body, Mapping):  # optins, policy enforcement, game plays, broken shapes
        return _unknown(ctx, element, standby)
    sender = as_id(_mapping(element.get("sender")).get("id"))
    recipient = as_id(_mapping(element.get("recipient")).get("id"))
    timestamp_ms = _epoch_ms(element.get("timestamp")) or _epoch_ms(ctx.time) or 0
    return handler(Element(ctx, element, standby, sender, recipient, timestamp_ms), body)


def _message(el: Element, message: Mapping[str, Any]) -> InboundEvent:
    mid = as_id(message.get("mid"))
    # Any truthy is_echo counts: mistaking our own send for a customer message would make the bot answer itself.
    echo = bool(message.get("is_echo"))
    if message.get("is_deleted"):
        key = f"deleted:{mid}" if mid else el.fallback_key(EventKind.DELETED)
        return el.event(EventKind.DELETED, key, echo=echo, message_id=mid)
    if message.get("is_unsupported") and not echo:
        return el.event(EventKind.UNSUPPORTED, mid or el.fallback_key(EventKind.UNSUPPORTED), message_id=mid)
    kind = EventKind.ECHO if echo else EventKind.MESSAGE
    text = as_str(message.get("text"))
    content_type, attachments, button = _content(message, text, el.entry.dialect)
    reply_to = _mapping(message.get("reply_to"))
    story = _mapping(reply_to.get("story"))
    if el.entry.dialect.story_replies and story:
        attachments += (Attachment(type="story", url=as_str(story.get("url"))),)
    return el.event(
        kind,
        mid or el.fallback_key(kind),
        echo=echo,
        message_id=mid,
        content_type=content_type,
        text=text,
        attachments=attachments,
        button=button,
        referral=_referral(message.get("referral")),
        reply_to_message_id=as_id(reply_to.get("mid")),
        app_id=as_id(message.get("app_id")) if echo else None,
        echo_metadata=as_str(message.get("metadata")) if echo else None,
    )


def _content(
    message: Mapping[str, Any], text: str | None, dialect: Dialect
) -> tuple[ContentType, tuple[Attachment, ...], ButtonReply | None]:
    attachments: list[Attachment] = []
    sticker = False
    items = message.get("attachments")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        payload = _mapping(item.get("payload"))
        kind = as_str(item.get("type")) or "unknown"
        # Stickers arrive as `sticker`, or as `image` with a sticker_id (Messenger until 2026-08-30, and Instagram).
        sticker = sticker or kind == "sticker" or payload.get("sticker_id") is not None
        url = as_str(payload.get("url")) or as_str(item.get("url"))  # template echoes carry url/title beside payload
        title = as_str(payload.get("title")) or as_str(item.get("title"))
        attachments.append(Attachment(type=kind, url=url, title=title))
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, Mapping):
        return ContentType.BUTTON, tuple(attachments), ButtonReply(as_str(quick_reply.get("payload")), title=text)
    if sticker:
        content_type = ContentType.STICKER
    elif attachments:  # before text: a fallback link preview comes with the text it previews
        content_type = dialect.content_types.get(attachments[0].type, ContentType.OTHER)
    else:
        content_type = ContentType.TEXT if text else ContentType.OTHER
    return content_type, tuple(attachments), None


def _postback(el: Element, postback: Mapping[str, Any]) -> InboundEvent:
    mid = as_id(postback.get("mid"))
    payload, title = as_str(postback.get("payload")), as_str(postback.get("title"))  # standby postbacks have no payload
    key = mid or f"postback:{el.sender or ''}:{el.timestamp_ms}:{payload or ''}"
    referral = _referral(postback.get("referral"))  # Get Started tapped from an m.me link or an ad
    return el.event(
        EventKind.POSTBACK, key, message_id=mid, text=title, button=ButtonReply(payload, title), referral=referral
    )


def _reaction(el: Element, reaction: Mapping[str, Any]) -> InboundEvent:
    mid, action = as_id(reaction.get("mid")), as_str(reaction.get("action"))
    name, emoji = as_str(reaction.get("reaction")), as_str(reaction.get("emoji"))
    key = f"reaction:{mid}:{action or ''}:{name or emoji or ''}:{el.sender or ''}"
    # Older Messenger payloads name the reaction ("love") without an emoji: the name is better than nothing.
    typed = Reaction(target_message_id=mid, emoji=emoji or name, removed=action == "unreact")
    return el.event(
        EventKind.REACTION, key if mid else el.fallback_key(EventKind.REACTION), message_id=mid, reaction=typed
    )


def _read(el: Element, read: Mapping[str, Any]) -> InboundEvent:
    mid = as_id(read.get("mid"))  # Instagram messaging_seen
    point = as_id(read.get("watermark")) or mid  # Messenger message_reads
    key = f"read:{el.sender or ''}:{point}" if point else el.fallback_key(EventKind.READ)
    return el.event(EventKind.READ, key, message_id=mid)


def _referral_event(el: Element, referral: Mapping[str, Any]) -> InboundEvent:
    key = f"{EventKind.REFERRAL}:{el.sender or ''}:{el.timestamp_ms}"
    return el.event(EventKind.REFERRAL, key, referral=_referral(referral))


# Meta puts exactly one event object in an element; these are the ones both products send.
_HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {"message": _message, "postback": _postback, "reaction": _reaction, "read": _read, "referral": _referral_event}
)


def _unknown(ctx: _Entry, raw: Mapping[str, Any], standby: bool = False) -> InboundEvent:
    timestamp_ms = _epoch_ms(raw.get("timestamp")) or _epoch_ms(ctx.time) or 0
    element = Element(ctx, raw, standby, sender=None, recipient=None, timestamp_ms=timestamp_ms)
    return element.event(EventKind.UNKNOWN, f"{EventKind.UNKNOWN}:{_digest(raw)}")  # channel: entry id or ""


def _referral(value: object) -> Referral | None:
    if not isinstance(value, Mapping):
        return None
    return Referral(
        source=as_str(value.get("source")),
        type=as_str(value.get("type")),
        ref=as_str(value.get("ref")),
        ad_id=as_id(value.get("ad_id")),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


# Every string of an event is read through these two, and so made storable here (adapters/text_clean.py).
def as_str(value: object) -> str | None:
    return clean_text(value) if isinstance(value, str) and value else None


def as_id(value: object) -> str | None:
    if isinstance(value, str):
        return clean_text(value) or None
    # bool is an int, and a huge int would overflow int->str: neither is an id anyone sent on purpose.
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() < 128:
        return str(value)
    return None


def _epoch_ms(value: object) -> int | None:
    if isinstance(value, str):
        return _text_epoch_ms(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):  # json.loads accepts NaN and Infinity
        return None
    ms = value * 1000 if value < _SECONDS_BELOW else value
    return int(ms) if 0 < ms < _MAX_MS else None


def _text_epoch_ms(text: str) -> int | None:
    try:
        return _epoch_ms(float(text))  # exact: epoch milliseconds stay far below 2**53
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)  # test fixtures (Chatwoot's) use ISO-8601 strings
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = moment.timestamp() * 1000
    return int(ms) if 0 < ms < _MAX_MS else None


def _digest(value: object) -> str:
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        # Only for mappings json.loads cannot produce (mixed key types, cycles): a stable stand-in beats raising.
        canonical = f"unserialisable:{type(value).__name__}"
    return hashlib.sha256(canonical.encode()).hexdigest()
