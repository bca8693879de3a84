"""The conversations API (/api/conversations): list and read an account's conversations, take one over from the
bot (pause / resume), erase a contact's data.

Owners and viewers see their own account; the operator sees every account and may narrow to one with
`account_id`. Another account's contact answers 404, like one that does not exist. A pause is per channel
(conversation_state, checked by the channel worker before it answers), so a relay conversation cannot be paused:
the business's own app decides whether to call the relay API, and the gateway answers every call it gets. That
is a 409 conflict with a sentence saying so, not a silent no-op.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from admin.activity import account_scope
from admin.auth import principal, require_writer
from admin.pagination import next_cursor, page_request
from core.clock import iso_utc
from core.storage.contacts_view import PLATFORMS, ConversationFilter, ConversationSummary, MessageView
from gateway.errors import ApiError, bad_request
from gateway.keys import CLOCK, SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

# The longest pause one call may set: a week, as for a bot's own handover pause.
MAX_PAUSE_MINUTES = 7 * 24 * 60
# When the bot's handover pause is 0 (echoes do not pause it), an explicit takeover still needs a length.
FALLBACK_PAUSE_MINUTES = 30
_MAX_QUERY_CHARS = 200


@routes.get("")
async def list_conversations(request: web.Request) -> web.Response:
    account_id = await account_scope(request)
    query = request.query
    platform = query.get("platform")
    if platform is not None and platform not in PLATFORMS:
        raise bad_request(f"'platform' must be one of: {', '.join(PLATFORMS)}", field="platform")
    q = (query.get("q") or "").strip() or None
    if q is not None and len(q) > _MAX_QUERY_CHARS:
        raise bad_request(f"'q' is longer than {_MAX_QUERY_CHARS} characters", field="q")
    for name in ("q", "bot_id"):
        if "\x00" in query.get(name, ""):
            raise bad_request(f"'{name}' may not contain NUL characters", field=name)
    page = page_request(request, (int, str))
    services = request.config_dict[SERVICES]
    where = ConversationFilter(account_id=account_id, q=q, platform=platform, bot_id=query.get("bot_id") or None)
    # A search may scan every message of the account: a bounded number run at once (else 429 with Retry-After).
    async with services.search_slots.slot() if q is not None else contextlib.nullcontext():
        found = await services.conversation_view.page(
            where,
            after=page.after,  # type: ignore[arg-type]
            limit=page.limit + 1,
        )
    now = request.config_dict[CLOCK].now_ms()
    return web.json_response(
        {
            "conversations": [conversation_json(c, now) for c in found[: page.limit]],
            "next_cursor": next_cursor([(c.last_message_at or 0, c.id) for c in found], page.limit),
        }
    )


@routes.get("/{contact_id}")
async def read_conversation(request: web.Request) -> web.Response:
    summary = await _visible(request)
    page = page_request(request, (int,))
    services = request.config_dict[SERVICES]
    after_seq = int(page.after[0]) if page.after else None
    messages = await services.conversation_view.messages(summary.id, after_seq=after_seq, limit=page.limit + 1)
    now = request.config_dict[CLOCK].now_ms()
    return web.json_response(
        {
            "conversation": conversation_json(summary, now),
            "pausable": await _pausable(request, summary),
            "messages": [message_json(m) for m in messages[: page.limit]],
            "next_cursor": next_cursor([(m.seq,) for m in messages], page.limit),
        }
    )


@routes.post("/{contact_id}/pause")
async def pause_conversation(request: web.Request) -> web.Response:
    summary = await _visible(request)
    require_writer(principal(request))
    body = validate(await _optional_json(request), (Field("minutes", int, min=1, max=MAX_PAUSE_MINUTES),))
    services = request.config_dict[SERVICES]
    channel_ids = await _channels(request, summary)
    minutes = body.get("minutes")
    if minutes is None:
        bot = await services.bots.get(summary.bot_id)
        minutes = min(bot.handover_pause_minutes or FALLBACK_PAUSE_MINUTES, MAX_PAUSE_MINUTES)
    until = request.config_dict[CLOCK].now_ms() + minutes * 60_000
    for channel_id in channel_ids:
        await services.state.pause(channel_id, summary.external_id, until, source="api")
    return await _answer(request, summary.id)


@routes.post("/{contact_id}/resume")
async def resume_conversation(request: web.Request) -> web.Response:
    summary = await _visible(request)
    require_writer(principal(request))
    services = request.config_dict[SERVICES]
    for channel_id in await _channels(request, summary):
        await services.state.resume(channel_id, summary.external_id)
    return await _answer(request, summary.id)


@routes.delete("/{contact_id}")
async def erase_conversation(request: web.Request) -> web.Response:
    """Erase the customer behind this contact within its account and platform: every contact of the account with
    the same external id on the same platform (the same person on another bot of the account), their messages,
    ratings, and the pauses and inbox events of the account's channels on that platform. The same id on another
    platform is another person (a relay user id may equal a WhatsApp number) and is left alone."""
    summary = await _visible(request)
    require_writer(principal(request))
    report = await request.config_dict[SERVICES].eraser.erase_customer(
        summary.external_id, account_id=summary.account_id, platform=summary.platform
    )
    return web.json_response(
        {
            "erased": {
                "contacts": report.contacts,
                "messages": report.messages,
                "inbox_events": report.inbox_events,
            }
        }
    )


async def _visible(request: web.Request) -> ConversationSummary:
    who = principal(request)
    return await request.config_dict[SERVICES].conversation_view.get(
        request.match_info["contact_id"], account_id=None if who.is_admin else who.account_id
    )


async def _pausable(request: web.Request, summary: ConversationSummary) -> bool:
    if summary.platform == "relay":
        return False
    return bool(await request.config_dict[SERVICES].conversation_view.live_channels(summary))


async def _channels(request: web.Request, summary: ConversationSummary) -> list[str]:
    if summary.platform == "relay":
        raise ApiError(
            409,
            "conflict",
            "a relay conversation cannot be paused or resumed: the business's own app calls the relay API and"
            " decides itself when the bot answers",
        )
    channel_ids = await request.config_dict[SERVICES].conversation_view.live_channels(summary)
    if not channel_ids:
        raise ApiError(409, "conflict", f"the bot has no connected {summary.platform} channel any more")
    return channel_ids


async def _optional_json(request: web.Request) -> dict[str, Any]:
    """An empty body means "the defaults"; a body, if sent, must be a JSON object."""
    if not request.can_read_body:
        return {}
    return await read_json(request)


async def _answer(request: web.Request, contact_id: str) -> web.Response:
    who = principal(request)
    summary = await request.config_dict[SERVICES].conversation_view.get(
        contact_id, account_id=None if who.is_admin else who.account_id
    )
    return web.json_response(conversation_json(summary, request.config_dict[CLOCK].now_ms()))


def conversation_json(summary: ConversationSummary, now_ms: int) -> dict[str, Any]:
    paused = summary.paused_until is not None and summary.paused_until > now_ms
    last = (
        None
        if summary.last_role is None
        else {
            "role": summary.last_role,
            "preview": summary.last_preview,
            "created_at": None if summary.last_message_at is None else iso_utc(summary.last_message_at),
        }
    )
    return {
        "id": summary.id,
        "account_id": summary.account_id,
        "bot_id": summary.bot_id,
        "bot_name": summary.bot_name,
        "platform": summary.platform,
        "external_id": summary.external_id,
        "message_count": summary.message_count,
        "created_at": iso_utc(summary.created_at),
        "last_message_at": None if summary.last_message_at is None else iso_utc(summary.last_message_at),
        "last_message": last,
        "paused": paused,
        "paused_until": iso_utc(summary.paused_until) if paused and summary.paused_until is not None else None,
    }


def message_json(message: MessageView) -> dict[str, Any]:
    return {
        "id": message.id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "tokens": message.tokens,
        "created_at": iso_utc(message.created_at),
        "rating": message.rating,
    }
