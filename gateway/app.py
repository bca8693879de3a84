"""The application factory: `create_app(settings)` mounts the API surfaces and opens the service groups, one
cleanup context each, in dependency order; nothing happens at import.

`settings.role` decides what the process does (`serve --role`): `all` everything; `web` every HTTP API and
webhook, no inbox workers and no housekeeping; `worker` the inbox workers and housekeeping, serving only its
probes and metrics. Housekeeping runs in the process that leads (core/storage/leadership.py): once per database,
however many processes run it.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from api.bodies import LIMITS
from api.jwt_auth import JWT_CONFIG, JwtConfig
from api.operations import check_provided
from core.clock import Clock, SystemClock
from core.knowledge.refresh import refresh_terms
from core.metrics import Metrics
from core.tokens import TokenCounter
from gateway.background import TaskRegistry
from gateway.keys import CLOCK, LEADERSHIP, METRICS, SETTINGS, STORAGE, TOKENS, UPSTREAMS, WORKER
from gateway.middlewares import count_relay, error_envelope, request_context
from gateway.services import open_storage, open_upstreams, open_web, open_worker
from gateway.settings import Settings
from gateway.surfaces import Groups, limits, provide_handlers, provide_pages, surfaces_for
from web.routes import dashboard_app

log = structlog.get_logger("gateway.app")

# Reservations older than the TTL belong to a crashed call; look for them this often.
SWEEP_INTERVAL_SECONDS = 30.0
# Objects left alive since the last collection before the garbage collector looks at them again (gc_for_serving).
YOUNG_COLLECTION_THRESHOLD = 20_000
# Finished inbox events are kept this long: beyond Meta's 7-day retry horizon, so a late retry is still a duplicate.
INBOX_RETENTION_MS = 10 * 24 * 3600 * 1000
PURGE_INTERVAL_SECONDS = 3600.0
ROLLUP_INTERVAL_SECONDS = 60.0
# New knowledge documents wait at most this long before their embedding starts (EMBEDDINGS_MODEL set).
KNOWLEDGE_INDEX_INTERVAL_SECONDS = 1.0
NOTIFY_INTERVAL_SECONDS = 1.0


def create_app(
    settings: Settings, *, clock: Clock | None = None, tokens: TokenCounter | None = None
) -> web.Application:
    """The service. `clock` and a preloaded `tokens` counter may be shared in (tests, embedders)."""
    app = web.Application(
        middlewares=[request_context, count_relay, error_envelope],
        # The largest body any route accepts; each route enforces its own, smaller limit (api/bodies.py).
        client_max_size=max(settings.max_body_bytes, settings.max_webhook_bytes),
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[TOKENS] = tokens or TokenCounter(settings.data_dir / "tokenizers")
    app[METRICS] = Metrics.create()
    app[LIMITS] = limits(settings)
    app[JWT_CONFIG] = JwtConfig(settings.admin_jwt_secret, max_ttl_seconds=settings.admin_jwt_max_ttl_seconds)
    surfaces = surfaces_for(settings.role)
    for surface in surfaces:
        surface.mount(app)
    if settings.role != "worker":  # the web dashboard for people, over the same handlers
        app.add_subapp("/dashboard/", dashboard_app())
        app.router.add_get("/dashboard", _to_dashboard)
    # In dependency order; torn down in reverse (the workers drain before the database closes).
    if settings.role == "web":
        app.cleanup_ctx.extend((_storage, _upstreams, _web))
    else:
        app.cleanup_ctx.extend((_storage, _upstreams, _worker, _web, _housekeeping))

    async def every_handler_provided(app: web.Application) -> None:
        check_provided(app, surfaces)

    app.on_startup.append(every_handler_provided)  # runs after the cleanup contexts have started
    return app


async def _to_dashboard(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/dashboard/")


def gc_for_serving(app: web.Application) -> None:
    """For a serving process, once startup has imported and loaded everything:
    - move those objects out of the garbage collector's reach (gc.freeze). Otherwise each full collection walks
      them again: 20-40 ms pauses that show up as webhook acknowledgement latency;
    - collect the youngest generation after YOUNG_COLLECTION_THRESHOLD objects more are alive, not Python's 700.
      The message path makes no reference cycles of its own: its objects are freed as their counts drop, so at
      700 every turn's live objects (a few hundred per request in flight) set off a collection that found
      nothing, 0.3 ms each (the objects they point at are scattered over the heap), about a thousand of them in
      one webhook benchmark run. At the new threshold they hardly ever run; cycles that do form (an exception's
      traceback, say) are still collected once that many objects have been left behind.
    Not for tests, which build many apps in one process."""

    async def freeze(_: web.Application) -> None:
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])

    app.on_startup.append(freeze)


async def _storage(app: web.Application) -> AsyncIterator[None]:
    async with open_storage(app[SETTINGS], app[CLOCK]) as storage:
        app[STORAGE] = storage
        yield


async def _upstreams(app: web.Application) -> AsyncIterator[None]:
    async with open_upstreams(app[SETTINGS], app[CLOCK], app[TOKENS], app[STORAGE], app[METRICS]) as upstreams:
        app[UPSTREAMS] = upstreams
        yield


async def _worker(app: web.Application) -> AsyncIterator[None]:
    async with open_worker(app[SETTINGS], app[CLOCK], app[STORAGE], app[UPSTREAMS], app[METRICS]) as worker:
        app[WORKER] = worker
        yield


async def _web(app: web.Application) -> AsyncIterator[None]:
    async with open_web(app[SETTINGS], app[CLOCK], app[STORAGE]) as group:
        groups = Groups(
            settings=app[SETTINGS],
            clock=app[CLOCK],
            metrics=app[METRICS],
            storage=app[STORAGE],
            upstreams=app[UPSTREAMS],
            web=group,
            database_wide=lambda: LEADERSHIP in app and app[LEADERSHIP].leading,
        )
        provide_handlers(app, groups)
        if app[SETTINGS].role != "worker":
            provide_pages(app, groups)
        yield


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    storage = app[STORAGE]
    pool = app[WORKER].pool
    tasks = TaskRegistry()
    leadership = app[LEADERSHIP] = storage.db.leadership("housekeeping")

    async def sweep() -> None:
        if not await leadership.check():
            return  # another process leads: it sweeps
        released = await storage.quota.sweep_expired()
        if released:
            log.warning("stale_reservations_released", count=released)
        await storage.rate_limits.sweep()

    async def purge() -> None:
        if not await leadership.check():
            return
        purged = await storage.queue.purge(older_than_ms=INBOX_RETENTION_MS)
        if purged:
            log.info("inbox_purged", count=purged)
        await storage.notifications.prune()
        await storage.web_sessions.purge()  # ended dashboard sessions

    indexer = app[UPSTREAMS].knowledge_indexer

    async def embed_knowledge() -> None:
        if indexer is not None and await leadership.check():
            await indexer.run_once()

    notifier = app[UPSTREAMS].notifier

    async def notify() -> None:
        if await leadership.check():
            await notifier.run_once()

    async def refresh_knowledge_terms() -> None:
        if await leadership.check():
            await refresh_terms(storage.knowledge)

    tasks.every(SWEEP_INTERVAL_SECONDS, "reservation-sweeper", sweep)
    tasks.every(KNOWLEDGE_INDEX_INTERVAL_SECONDS, "knowledge-terms", refresh_knowledge_terms)
    tasks.every(NOTIFY_INTERVAL_SECONDS, "notifier", notify)
    if indexer is not None:
        tasks.every(KNOWLEDGE_INDEX_INTERVAL_SECONDS, "knowledge-indexer", embed_knowledge)
    elif await leadership.check():
        # EMBEDDINGS_MODEL was unset since documents were added: they wait for no vector any more.
        await storage.knowledge.ready_without_embeddings()

    async def roll_up() -> None:
        if await leadership.check():
            rolled = await storage.rollups.advance(app[CLOCK].now_ms())
            if rolled:
                log.info("hours_rolled_up", hours=rolled)

    tasks.every(PURGE_INTERVAL_SECONDS, "inbox-purger", purge)
    tasks.every(ROLLUP_INTERVAL_SECONDS, "rollups", roll_up)
    pool.start()
    yield
    await pool.stop()  # drain what is in flight before the database goes
    await tasks.close()
    await leadership.close()
