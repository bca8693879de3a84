"""Liveness and readiness and `GET /metrics`: what every process serves, a worker process included.

/metrics: the app's Prometheus registry in the text exposition format. Gauges that describe the database (inbox
depth) are refreshed from it at each scrape rather than tracked by hooks: the database is the truth, and a scrape
every 15 s costs two index counts. With METRICS_TOKEN set, the scraper must send it as a bearer token (compared in
constant time). Unset, the route is open only when the service listens on a loopback address (HOST 127.0.0.1, ::1
or localhost: a scraper on the same host); on any other address it answers 503 not_configured, because the
figures (accounts' traffic, error codes) are not for the public.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from api.errors import ApiError
from api.jwt_auth import bearer
from api.operations import Answer, OperationTable, Reply
from api.service.models import Liveness, Readiness, ReadinessChecks
from core.errors import StorageUnavailable
from core.metrics import Metrics
from core.storage.db import Database
from core.storage.migrations import LATEST_VERSION, current_version, writable
from core.storage.reads.status import StatusReader


class Probes:
    def __init__(
        self,
        db: Database,
        status: StatusReader,
        metrics: Metrics,
        *,
        llm_configured: bool,
        metrics_token: str | None,
        host: str,
        database_wide: Callable[[], bool],
    ) -> None:
        self._db = db
        self._status = status
        self._metrics = metrics
        self._llm_configured = llm_configured
        self._metrics_token = metrics_token
        self._loopback = is_loopback(host)
        # Whether this process exports the gauges that describe the whole database (inbox depth): one process
        # does (the housekeeping leader), so that summing a metric over processes does not count it N times.
        self._database_wide = database_wide

    async def healthz(self, request: web.Request) -> Liveness:
        return Liveness(status="ok")

    async def readyz(self, request: web.Request) -> Reply[Readiness]:
        database = await self._db.ping()
        try:
            migrations = database and await current_version(self._db) >= LATEST_VERSION
        except StorageUnavailable:
            migrations = False
        if migrations and self._db.writes.failing:
            # Answering reads is not enough: with the disk full every webhook is refused (503). After a write
            # failed for want of the database, ready again only once a write goes through (one that changes
            # nothing still needs room in the journal). Not probed otherwise: another process holding SQLite's
            # write lock for a moment must not make this wait, nor say "not ready".
            database = await writable(self._db)
        # An unset OpenAI key is reported but does not make the service unready: the admin API still works.
        ready = database and migrations
        checks = ReadinessChecks(database=database, migrations=migrations, llm_configured=self._llm_configured)
        return Reply(Readiness(status="ready" if ready else "not_ready", checks=checks), 200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        expected = self._metrics_token
        if expected is None and not self._loopback:
            raise ApiError(
                503, "not_configured", "set METRICS_TOKEN to expose /metrics on a non-loopback address (HOST)"
            )
        if expected is not None and not hmac.compare_digest(bearer(request).encode(), expected.encode()):
            raise ApiError(
                401, "unauthorized", "a valid metrics token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if self._database_wide():
            for state, count in (await self._status.inbox_depth()).items():
                self._metrics.inbox_depth.labels(state).set(count)
        else:
            self._metrics.inbox_depth.clear()
        body = generate_latest(self._metrics.registry)
        # The classic text format (0.0.4), which every Prometheus version and scraper reads.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def is_loopback(host: str) -> bool:
    """True when HOST only accepts connections from this machine (0.0.0.0, :: and real addresses do not)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


OPERATIONS = OperationTable(Probes, tag="service")
OPERATIONS.get("/healthz", Probes.healthz, summary="Liveness: the process is up")
OPERATIONS.get(
    "/readyz",
    Probes.readyz,
    summary="Readiness: the database is reachable and migrated",
    description="llm_configured=false (no OPENAI_API_KEY) does not make the service unready.",
    success={200: "Ready"},
    answers={503: Answer("Not ready: the failing check is false", model=Readiness)},
)
OPERATIONS.get(
    "/metrics",
    Probes.metrics,
    summary="Prometheus metrics",
    description=(
        "The Prometheus text exposition format (0.0.4): webhook deliveries, inbox events and depth, event "
        "processing and model call latency histograms, tokens, cost, Graph and OpenAI errors by code, relay "
        "requests by status. With METRICS_TOKEN set, `Authorization: Bearer <METRICS_TOKEN>` is required (401 "
        "otherwise). Without it the route is open only when the service listens on a loopback address (HOST "
        "127.0.0.1, ::1 or localhost); on any other address it answers 503 `not_configured`: set METRICS_TOKEN to "
        "expose /metrics on a non-loopback address."
    ),
    answers={200: Answer("OK", content={"text/plain": {"type": "string"}})},
    errors=(401, 503),
    operation_id="getMetrics",
)
