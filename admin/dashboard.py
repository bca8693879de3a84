"""`GET /api/dashboard/metrics`, `/usage` and `/bots`: what an account's bots did and cost, from the real data.

Owners and viewers see their own account; an admin sees one account with `account_id`, or every account's
totals without it. Figures come from the database (core/storage/reports*.py); the JSON shapes live in
admin/dashboard_render.py.
"""

from __future__ import annotations

from aiohttp import web

from admin.dashboard_params import (
    parse_buckets,
    parse_group_by,
    parse_optional_range,
    parse_range,
    parse_top,
    report_account,
)
from admin.dashboard_render import bot_json, metrics_json, series_json
from core.clock import iso_utc
from core.storage.reports import ReportScope
from gateway.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    account_id = await report_account(request)
    span = parse_range(request)
    scope = ReportScope(account_id, span.start, span.end)
    services = request.config_dict[SERVICES]
    reports = services.reports
    # A quota belongs to one account: an admin's all-accounts view has none.
    quota = None if account_id is None else await services.quota.snapshot(account_id)
    return web.json_response(
        metrics_json(
            scope,
            usage=await reports.usage(scope),
            messages=await reports.messages(scope),
            dead_letters=await reports.dead_letters(scope),
            feedback=await reports.feedback(scope),
            quota=quota,
        )
    )


@routes.get("/usage")
async def usage(request: web.Request) -> web.Response:
    account_id = await report_account(request)
    span = parse_range(request)
    buckets = parse_buckets(request, span)
    group_by = parse_group_by(request)
    top = parse_top(request)
    scope = ReportScope(account_id, span.start, span.end)
    store = request.config_dict[SERVICES].usage_series
    found = await store.series(
        scope, origin=buckets.origin, size_ms=buckets.size_ms, count=buckets.count, group_by=group_by, top=top
    )
    labels: dict[str, str] = {}
    if group_by == "bot":
        labels = await store.bot_names(s.key for s in found.series if s.key is not None)
    return web.json_response(series_json(scope, buckets, group_by, top, found, labels))


@routes.get("/bots")
async def bots(request: web.Request) -> web.Response:
    account_id = await report_account(request)
    span = parse_optional_range(request)  # no range: the bots' whole life
    scope = None if span is None else ReportScope(account_id, span.start, span.end)
    reports = await request.config_dict[SERVICES].bot_reports.bots(account_id, scope)
    return web.json_response(
        {
            "account_id": account_id,
            "from": None if scope is None else iso_utc(scope.start),
            "to": None if scope is None else iso_utc(scope.end),
            "bots": [bot_json(r) for r in reports],
        }
    )
