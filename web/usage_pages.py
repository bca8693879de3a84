"""The Usage pages: the usage series by model, bot or platform, the CSV export, and the activity feed; each from
the API's handler objects, as the signed-in person.

    GET /dashboard/usage              tokens, calls and cost by day, grouped (?group_by=model|bot|platform, from, to)
    GET /dashboard/usage/export.csv   every model call in the range, as the API exports it
    GET /dashboard/activity           the activity feed, newest first (?cursor= for older entries)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from api.bodies import Query
from api.dashboard.activity import Activity
from api.dashboard.models import ActivityQuery
from api.dashboard.ranges import UsageQuery
from api.dashboard.reports import Reports
from api.provisioning.exports import ExportQuery, Exports
from api.query import AccountQuery
from web.charts import daily_tokens
from web.forms import FilledQuery, GivenQuery
from web.rendering import Renderer, session_of

GROUPS = (("model", "Model"), ("bot", "Bot"), ("platform", "Platform"))
ACTIVITY_PAGE = 20


@dataclass(frozen=True, slots=True)
class UsagePageDeps:
    reports: Reports
    exports: Exports
    activity: Activity


class UsagePages:
    def __init__(self, deps: UsagePageDeps, renderer: Renderer) -> None:
        self._d = deps
        self._r = renderer

    async def usage(self, request: web.Request) -> web.StreamResponse:
        # The query string is the API's own (from, to, group_by, account_id): its checks and its words.
        query = FilledQuery(request, UsageQuery)
        report = await self._d.reports.usage(request, query)
        account_id = query.parse_field("account_id")
        activity = await self._d.activity.list_activity(
            request, GivenQuery(request, ActivityQuery(account_id=account_id, limit=ACTIVITY_PAGE))
        )
        export = {"format": "csv", "from": report.from_, "to": report.to}
        if account_id:
            export["account_id"] = account_id
        return self._r.page(
            "usage.html",
            session_of(request),
            section="usage",
            report=report,
            chart=daily_tokens(report),
            series=report.series,
            groups=GROUPS,
            group_by=report.group_by,
            export_url="/dashboard/usage/export.csv?" + urlencode(export),
            activity=activity.activity,
            older=_older(activity.next_cursor, account_id),
            account_id=account_id,
            asked_from=request.query.get("from", "")[:40],
            asked_to=request.query.get("to", "")[:40],
        )

    async def export(self, request: web.Request) -> web.StreamResponse:
        return await self._d.exports.export_usage(request, Query(request, ExportQuery))

    async def activity(self, request: web.Request) -> web.StreamResponse:
        account_id = Query(request, AccountQuery).parse_field("account_id")
        query = ActivityQuery(account_id=account_id, limit=ACTIVITY_PAGE, cursor=request.query.get("cursor"))
        page = await self._d.activity.list_activity(request, GivenQuery(request, query))
        return self._r.page(
            "activity.html",
            session_of(request),
            section="usage",
            activity=page.activity,
            older=_older(page.next_cursor, account_id),
        )


def _older(cursor: str | None, account_id: str | None) -> str | None:
    if cursor is None:
        return None
    return "/dashboard/activity?" + urlencode({"cursor": cursor, **({"account_id": account_id} if account_id else {})})
