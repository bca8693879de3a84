"""The admin and dashboard API: sub-applications that share one JWT middleware.

The admin API is mounted under /api/admin/; the dashboard, user, feedback and status APIs under their own
prefixes (gateway/app.py). The public webhook and relay surface never passes through this middleware stack.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from admin import accounts, api_keys, bots, channels, credits, plans
from admin.auth import require_token


def create_jwt_app(route_tables: Iterable[web.RouteTableDef]) -> web.Application:
    """A sub-application whose every route needs a valid admin/owner/viewer JWT."""
    app = web.Application(middlewares=[require_token])
    for routes in route_tables:
        app.add_routes(routes)
    return app


def create_admin_app() -> web.Application:
    return create_jwt_app(module.routes for module in (plans, accounts, api_keys, credits, bots, channels))
