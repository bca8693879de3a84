"""The admin and dashboard API: a sub-application with its own JWT middleware.

Mounted under /api/admin/; the public webhook and relay surface never passes through this middleware stack.
"""

from __future__ import annotations

from aiohttp import web

from admin import accounts, api_keys, bots, channels, credits, plans
from admin.auth import require_token


def create_admin_app() -> web.Application:
    app = web.Application(middlewares=[require_token])
    for module in (plans, accounts, api_keys, credits, bots, channels):
        app.add_routes(module.routes)
    return app
