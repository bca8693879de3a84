"""The application factory: `create_app(settings)` wires routes, middlewares and resources; nothing at import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from admin import activity, conversations, dashboard, feedback, status, user_quota
from admin.app import create_admin_app, create_jwt_app
from core.clock import Clock, SystemClock
from core.tokens import TokenCounter
from gateway import data_deletion, health, metrics_route, openapi_route, relay, webhooks
from gateway.background import TaskRegistry
from gateway.keys import CLOCK, SERVICES, SETTINGS, TOKENS
from gateway.middlewares import error_envelope, request_context
from gateway.services import build_services
from gateway.settings import Settings

log = structlog.get_logger("gateway.app")

# Reservations older than the TTL belong to a crashed call; look for them this often.
SWEEP_INTERVAL_SECONDS = 30.0
# Finished inbox events are kept this long: beyond Meta's 7-day retry horizon, so a late retry is still a duplicate.
INBOX_RETENTION_MS = 10 * 24 * 3600 * 1000
PURGE_INTERVAL_SECONDS = 3600.0


def create_app(
    settings: Settings, *, clock: Clock | None = None, tokens: TokenCounter | None = None
) -> web.Application:
    """The service. `clock` and a preloaded `tokens` counter may be shared in (tests, embedders)."""
    app = web.Application(
        middlewares=[request_context, metrics_route.count_relay, error_envelope],
        # The largest body any route accepts; each route enforces its own, smaller limit (gateway/validation.py).
        client_max_size=max(settings.max_body_bytes, settings.max_webhook_bytes),
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[TOKENS] = tokens or TokenCounter(settings.data_dir / "tokenizers")
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_housekeeping)
    app.add_routes(health.routes)
    app.add_routes(relay.routes)
    webhooks.add_routes(app)
    app.add_routes(data_deletion.routes)
    app.add_routes(metrics_route.routes)
    openapi_route.setup(app)
    app.add_routes(feedback.routes)  # API key or JWT: not a JWT sub-application (admin/feedback.py)
    app.add_subapp("/api/admin/", create_admin_app())
    app.add_subapp("/api/conversations/", create_jwt_app([conversations.routes]))
    app.add_subapp("/api/dashboard/", create_jwt_app([dashboard.routes, activity.routes]))
    app.add_subapp("/api/user/", create_jwt_app([user_quota.routes]))
    app.add_subapp("/api/status/", create_jwt_app([status.routes]))
    return app


def freeze_gc_after_startup(app: web.Application) -> None:
    """For a serving process: once startup has imported and loaded everything, move those objects out of the
    garbage collector's reach (gc.freeze). Otherwise each full collection walks them again: 20-40 ms pauses
    that show up as webhook acknowledgement latency. Not for tests, which build many apps in one process."""

    async def freeze(_: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)


async def _services(app: web.Application) -> AsyncIterator[None]:
    async with build_services(app[SETTINGS], app[CLOCK], app[TOKENS]) as services:
        app[SERVICES] = services
        yield


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    tasks = TaskRegistry()

    async def sweep() -> None:
        released = await services.quota.sweep_expired()
        if released:
            log.warning("stale_reservations_released", count=released)

    async def purge() -> None:
        purged = await services.queue.purge(older_than_ms=INBOX_RETENTION_MS)
        if purged:
            log.info("inbox_purged", count=purged)

    tasks.every(SWEEP_INTERVAL_SECONDS, "reservation-sweeper", sweep)
    tasks.every(PURGE_INTERVAL_SECONDS, "inbox-purger", purge)
    services.workers.start()
    yield
    await services.workers.stop()  # drain what is in flight before the database goes
    await tasks.close()
