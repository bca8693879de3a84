"""`GET /api/dashboard/activity`: what happened to an account, newest first, one cursor page at a time.

Owners and viewers read their own account's feed; the operator reads every account's, or one with `account_id`.
"""

from __future__ import annotations

from aiohttp import web

from api.bodies import Query
from api.dashboard.models import ActivityPage, ActivityQuery
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.pagination import next_cursor
from api.scopes import account_scope
from core.storage.accounts import AccountStore
from core.storage.activity import ActivityStore


class Activity:
    def __init__(self, activity: ActivityStore, accounts: AccountStore) -> None:
        self._activity = activity
        self._accounts = accounts

    async def list_activity(self, request: web.Request, query: Query[ActivityQuery]) -> ActivityPage:
        # The account first: another account's id is a 404 whatever else the query gets wrong.
        account_id = await account_scope(principal(request), query.parse_field("account_id"), self._accounts)
        asked = query.parse()
        page = asked.page((int, str))
        entries = await self._activity.page(
            account_id,
            kind=asked.kind,
            after=page.after,  # type: ignore[arg-type]
            limit=page.limit + 1,
        )
        return ActivityPage(
            activity=entries[: page.limit],
            next_cursor=next_cursor([(e.created_at, e.id) for e in entries], page.limit),
        )


OPERATIONS = OperationTable(Activity, tag="dashboard", security=JWT)
OPERATIONS.get(
    "/activity",
    Activity.list_activity,
    summary="What happened to the account, newest first: conversations, quota warnings, channel errors, takeovers, "
    "admin actions",
    description="Owners and viewers see their own account; an admin sees every account, or one with `account_id`. "
    "Any role may read. Quota warnings come once per month at 80% of the allowance and when it is used up; channel "
    "errors when a channel turns needs_reauth or disabled; dead letters when a channel event is given up on after "
    "its retries and the customer is sent the bot's fallback message (once per event; what `fallbacks` of "
    "/api/dashboard/metrics counts); admin actions for every successful mutation made through the JWT APIs on the "
    "account (an operator's action does not name the operator: `detail.actor` is only given for owners' and "
    "viewers' own actions).",
)
