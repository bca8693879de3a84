"""`GET /api/dashboard/activity`: what happened to an account, newest first, one cursor page at a time.

Owners and viewers read their own account's feed; the operator reads every account's, or one with `account_id`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.auth import check_account, principal
from admin.pagination import next_cursor, page_request
from core.clock import iso_utc
from core.storage.activity import KINDS, ActivityEntry
from gateway.errors import bad_request
from gateway.keys import SERVICES

routes = web.RouteTableDef()


async def account_scope(request: web.Request) -> str | None:
    """The one account a list is about: the caller's own for owners and viewers (naming another is 404), for the
    operator the `account_id` asked for (404 if there is no such account) or None for every account."""
    who = principal(request)
    account_id = request.query.get("account_id")
    if account_id is None:
        return who.account_id
    check_account(who, account_id)
    if who.is_admin:
        await request.config_dict[SERVICES].accounts.get(account_id)
    return account_id


@routes.get("/activity")
async def list_activity(request: web.Request) -> web.Response:
    account_id = await account_scope(request)
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise bad_request(f"'kind' must be one of: {', '.join(KINDS)}", field="kind")
    page = page_request(request, (int, str))
    entries = await request.config_dict[SERVICES].activity.page(
        account_id,
        kind=kind,
        after=page.after,  # type: ignore[arg-type]
        limit=page.limit + 1,
    )
    return web.json_response(
        {
            "activity": [activity_json(e) for e in entries[: page.limit]],
            "next_cursor": next_cursor([(e.created_at, e.id) for e in entries], page.limit),
        }
    )


def activity_json(entry: ActivityEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "account_id": entry.account_id,
        "kind": entry.kind,
        "summary": entry.summary,
        "bot_id": entry.bot_id,
        "channel_id": entry.channel_id,
        "contact_id": entry.contact_id,
        "detail": None if entry.detail is None else dict(entry.detail),
        "created_at": iso_utc(entry.created_at),
    }
