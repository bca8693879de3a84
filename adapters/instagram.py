"""Instagram messaging webhook parsing (`object: "instagram"`): one `InboundEvent` per element of every entry.

The envelope walk, the event kinds, the `event_key` scheme and the malformed-input rules are shared with Messenger
and documented in `adapters.messaging_platform`. What is Instagram's own, declared here or handled there:
- there is no `message_echoes` field: echoes arrive on `messages` with `is_echo` (self messaging adds `is_self`,
  which changes nothing: the echo side has `is_echo`, the received side is an ordinary, answerable message);
- `is_deleted` (the customer unsent a message) -> DELETED; `is_unsupported` -> UNSUPPORTED;
- `messaging_seen` sends `read{mid}` (no watermark): READ with `message_id`;
- story mentions are `story_mention` attachments; story replies carry `reply_to.story{id,url}`, kept as an
  attachment of type "story" (the story is not a message, so `reply_to_message_id` stays None);
- attachment types `share`, `ig_reel`, `reel`, `post`, `ig_post` -> SHARE; `ephemeral` (disappearing media, no url)
  and anything undocumented -> OTHER; an `image` with a `sticker_id` -> STICKER;
- the App Dashboard "Test" button sends `changes[{field: "messages", value: {sender, recipient, timestamp,
  message}}]` instead of `messaging[]`: parsed like a live element. Other changes (comments, live_comments,
  mentions, story_insights) become UNKNOWN events.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from adapters.events import ContentType, InboundEvent, Platform
from adapters.messaging_platform import Dialect, parse_body

_CONTENT_TYPES: Mapping[str, ContentType] = MappingProxyType(
    {
        "image": ContentType.IMAGE,
        "audio": ContentType.AUDIO,
        "video": ContentType.VIDEO,
        "file": ContentType.FILE,
        "sticker": ContentType.STICKER,
        "share": ContentType.SHARE,
        "ig_reel": ContentType.SHARE,
        "reel": ContentType.SHARE,
        "post": ContentType.SHARE,
        "ig_post": ContentType.SHARE,
        "story_mention": ContentType.STORY_MENTION,
        "template": ContentType.TEMPLATE,  # echoes of our own generic templates
    }
)

# The dashboard Test button uses the subscription field name; the value is shaped like a live messaging element.
_MESSAGING_FIELDS = frozenset(
    {"messages", "messaging_postbacks", "message_reactions", "messaging_seen", "messaging_referral"}
)

DIALECT = Dialect(
    platform=Platform.INSTAGRAM,
    content_types=_CONTENT_TYPES,
    message_change_fields=_MESSAGING_FIELDS,
    story_replies=True,
)


def parse(payload: Mapping[str, Any]) -> list[InboundEvent]:
    """Every event of one Instagram webhook body. Never raises: a non-mapping body gives `[]`."""
    return parse_body(payload, DIALECT)
