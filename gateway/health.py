"""Liveness and readiness: is the process up; can it reach its database at the latest schema."""

from __future__ import annotations

from aiohttp import web

from core.storage.db import TRANSIENT_ERRORS
from core.storage.migrations import LATEST_VERSION, current_version
from gateway.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks = {"database": await services.db.ping()}
    try:
        checks["migrations"] = checks["database"] and await current_version(services.db) >= LATEST_VERSION
    except TRANSIENT_ERRORS:
        checks["migrations"] = False
    checks["llm_configured"] = services.engine is not None
    # An unset OpenAI key is reported but does not make the service unready: the admin API still works.
    ready = checks["database"] and checks["migrations"]
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return web.json_response(body, status=200 if ready else 503)
