"""Rendering a reply as Graph API requests: typing indicators and text messages, per platform.

Sans-I/O: each function returns `GraphRequest`s (a path under `{GRAPH_API_BASE_URL}/{version}/` and a JSON body);
the transport adds the token, posts them in order and classifies failures with `adapters.graph_errors`.
Body shapes follow meta-platforms.md §5 (Messenger Send API, Instagram send API, WhatsApp Cloud API).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.events import Platform
from adapters.text_split import (
    INSTAGRAM_MAX_CHARS,
    INSTAGRAM_MAX_UTF8_BYTES,
    MESSENGER_MAX_CHARS,
    WHATSAPP_MAX_CHARS,
    split_text,
)


@dataclass(frozen=True, slots=True)
class GraphRequest:
    """One POST to Graph. `body` is a plain dict so it serialises with `json.dumps`; treat it as read-only."""

    path: str  # relative to {GRAPH_API_BASE_URL}/{version}/, e.g. "<PAGE_ID>/messages"
    body: Mapping[str, Any]


def text_limits(platform: Platform | str) -> dict[str, int]:
    """The `split_text` keyword limits for a platform's text messages."""
    match Platform(platform):
        case Platform.MESSENGER:
            return {"max_chars": MESSENGER_MAX_CHARS}
        case Platform.INSTAGRAM:
            return {"max_chars": INSTAGRAM_MAX_CHARS, "max_utf8_bytes": INSTAGRAM_MAX_UTF8_BYTES}
        case Platform.WHATSAPP:
            return {"max_chars": WHATSAPP_MAX_CHARS}
    raise ValueError(f"unknown platform {platform!r}")  # unreachable: Platform() already refused it


def typing_request(
    platform: Platform | str, channel_external_id: str, customer_id: str | None, inbound_message_id: str | None
) -> GraphRequest | None:
    """A "typing…" indicator for the customer, or None when the platform cannot show one for this message.

    Messenger and Instagram take a `typing_on` sender action (cleared by our next message or after 20 s). WhatsApp
    has no bare typing action: its indicator rides on marking the customer's message as read (cleared by our reply
    or after 25 s), so it needs the inbound wamid.
    """
    path = f"{channel_external_id}/messages"
    if Platform(platform) is Platform.WHATSAPP:
        if not inbound_message_id:
            return None
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": inbound_message_id,
            "typing_indicator": {"type": "text"},
        }
        return GraphRequest(path, body)
    if not customer_id:
        return None
    return GraphRequest(path, {"recipient": {"id": customer_id}, "sender_action": "typing_on"})


# Attached to every Messenger message we send (Send API `message.metadata`, echoed in `message_echoes`).
ECHO_MARK = "nexus-gateway"


def text_requests(
    platform: Platform | str,
    channel_external_id: str,
    customer_id: str,
    text: str,
    *,
    reply_to_message_id: str | None = None,
    human_agent: bool = False,
) -> list[GraphRequest]:
    """The text as one or more messages, in sending order, each within the platform's text limit.

    `reply_to_message_id` quotes the customer's message on WhatsApp, on the first chunk only: one quote bubble per
    reply, not one per chunk. Messenger and Instagram replies are not quoted. `human_agent`: a person's reply on
    Messenger past the 24-hour window, tagged HUMAN_AGENT (allowed for 7 days after the customer's message; never
    for a bot's reply).
    """
    platform = Platform(platform)
    path = f"{channel_external_id}/messages"
    chunks = split_text(text, **text_limits(platform))
    if platform is Platform.MESSENGER:
        # RESPONSE: a reply inside the 24-hour standard messaging window, which is the only kind a bot may send.
        # The metadata comes back in the echo of the message: ours, told apart from a human in the Page inbox even
        # when the send's message id was never recorded (a crash between the send and its commit).
        message = {"text": "", "metadata": ECHO_MARK}
        kind: dict[str, str] = (
            {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"} if human_agent else {"messaging_type": "RESPONSE"}
        )
        return [
            GraphRequest(path, {"recipient": {"id": customer_id}, **kind, "message": {**message, "text": chunk}})
            for chunk in chunks
        ]
    if platform is Platform.INSTAGRAM:
        return [GraphRequest(path, {"recipient": {"id": customer_id}, "message": {"text": chunk}}) for chunk in chunks]
    address = whatsapp_recipient(customer_id)
    requests = []
    for index, chunk in enumerate(chunks):
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **address,
            "type": "text",
            "text": {"body": chunk, "preview_url": False},
        }
        if reply_to_message_id and index == 0:
            body["context"] = {"message_id": reply_to_message_id}
        requests.append(GraphRequest(path, body))
    return requests


def whatsapp_recipient(customer_id: str) -> dict[str, str]:
    """How a WhatsApp send names the customer. A phone number (wa_id) goes in `to`, with a leading "+" (without it
    WhatsApp prepends the business number's country code: a misdelivery risk). A business-scoped user id (BSUID,
    "US.13491208655302741918": a customer with a username, whose number Meta does not share) goes in `recipient`,
    as Meta's BSUID guide has it."""
    if is_bsuid(customer_id):
        return {"recipient": customer_id}
    return {"to": "+" + customer_id.strip().lstrip("+")}


def is_bsuid(customer_id: str) -> bool:
    """A WhatsApp business-scoped user id: two capital letters (a country), a dot, then letters and digits."""
    return _BSUID.fullmatch(customer_id) is not None


_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9.]+")
