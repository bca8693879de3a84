"""The admin and dashboard API: sub-applications that share one JWT middleware.

The admin API is mounted under /api/admin/; the dashboard, user, feedback and status APIs under their own
prefixes (gateway/app.py). The public webhook and relay surface never passes through this middleware stack.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from admin import accounts, api_keys, audit, bots, channels, credits, exports, plans
from admin.audit import audit_mutations
from admin.auth import require_token


def create_jwt_app(route_tables: Iterable[web.RouteTableDef]) -> web.Application:
    """A sub-application whose every route needs a valid admin/owner/viewer JWT; its mutations are audited."""
    # Order matters: the audit middleware runs inside require_token, so it knows who is acting.
    app = web.Application(middlewares=[require_token, audit_mutations])
    for routes in route_tables:
        app.add_routes(routes)
    return app


def create_admin_app() -> web.Application:
    modules = (plans, accounts, api_keys, credits, bots, channels, audit, exports)
    return create_jwt_app(module.routes for module in modules)
