"""Messenger webhook parsing (`object: "page"`): one `InboundEvent` per element of every entry.

The envelope walk, the event kinds, the `event_key` scheme and the malformed-input rules are shared with Instagram
and documented in `adapters.messaging_platform`. What is Messenger's own, declared here or handled there:
- echoes come from the `message_echoes` field as `message.is_echo` with an `app_id`: ours, another app's, or the
  Page inbox's (a human took over). The core compares it with our app id;
- reads carry a `watermark`; deliveries `mids` + `watermark` and often no `timestamp` (the entry time is used);
- `pass_thread_control` / `take_thread_control` / `request_thread_control` / `app_roles` become HANDOVER events;
- attachment types `sticker` (and, during the transition ending 2026-08-30, `image` with a `sticker_id`),
  `fallback` (a link preview, sent with the text it previews), `template` (mostly on echoes), reels and posts;
- `message_edit` (the customer edited a message) becomes an EDITED event with the new text;
- Page `feed` / `group_feed` updates arrive as `changes[]` (or inside `messaging[]` with a `field`): not messages,
  they become UNKNOWN events.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from adapters.events import ContentType, EventKind, InboundEvent, Platform
from adapters.messaging_platform import Dialect, Element, Handler, as_id, as_str, parse_body

_CONTENT_TYPES: Mapping[str, ContentType] = MappingProxyType(
    {
        "image": ContentType.IMAGE,
        "audio": ContentType.AUDIO,
        "video": ContentType.VIDEO,
        "file": ContentType.FILE,
        "sticker": ContentType.STICKER,
        "fallback": ContentType.FALLBACK,
        "template": ContentType.TEMPLATE,
        "reel": ContentType.SHARE,
        "ig_reel": ContentType.SHARE,
        "post": ContentType.SHARE,
        "ig_post": ContentType.SHARE,
    }
)


def _delivery(el: Element, delivery: Mapping[str, Any]) -> InboundEvent:
    # `mids` may be absent; the watermark alone says "everything before this was delivered".
    watermark = as_id(delivery.get("watermark"))
    key = f"delivery:{el.sender or ''}:{watermark}" if watermark else el.fallback_key(EventKind.DELIVERY)
    return el.event(EventKind.DELIVERY, key)


def _handover(el: Element, handover: Mapping[str, Any]) -> InboundEvent:
    # app_id = the app that owns (or asks for) the thread now, so the core can tell whether it may answer.
    app_id = as_id(handover.get("new_owner_app_id")) or as_id(handover.get("requested_owner_app_id"))
    return el.event(EventKind.HANDOVER, f"{EventKind.HANDOVER}:{el.sender or ''}:{el.timestamp_ms}", app_id=app_id)


def _message_edit(el: Element, edit: Mapping[str, Any]) -> InboundEvent:
    mid = as_id(edit.get("mid"))
    key = f"edited:{mid}:{as_id(edit.get('num_edit')) or ''}" if mid else el.fallback_key(EventKind.EDITED)
    return el.event(EventKind.EDITED, key, message_id=mid, text=as_str(edit.get("text")))


_HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "delivery": _delivery,
        "message_edit": _message_edit,
        "pass_thread_control": _handover,
        "take_thread_control": _handover,
        "request_thread_control": _handover,
        "app_roles": _handover,
    }
)

DIALECT = Dialect(platform=Platform.MESSENGER, content_types=_CONTENT_TYPES, handlers=_HANDLERS)


def parse(payload: Mapping[str, Any]) -> list[InboundEvent]:
    """Every event of one Messenger webhook body. Never raises: a non-mapping body gives `[]`."""
    return parse_body(payload, DIALECT)
