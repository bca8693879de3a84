"""`GET /api/user/quota`: the caller's account allowance this month, what is used, held and left, and credits.

Owners and viewers read their own account; an admin names one with `account_id` (a quota has no total).
"""

from __future__ import annotations

from aiohttp import web

from admin.dashboard_params import required_account
from admin.dashboard_render import quota_detail_json
from gateway.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/quota")
async def user_quota(request: web.Request) -> web.Response:
    account_id = await required_account(request)
    snapshot = await request.config_dict[SERVICES].quota.snapshot(account_id)
    return web.json_response({"account_id": account_id, **quota_detail_json(snapshot)})
