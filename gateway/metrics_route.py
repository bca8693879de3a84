"""`GET /metrics`: the app's Prometheus registry in the text exposition format, and the relay request counter.

Gauges that describe the database (inbox depth) are refreshed from it at each scrape rather than tracked by
hooks: the database is the truth, and a scrape every 15 s costs two index counts. With METRICS_TOKEN set, the
scraper must send it as a bearer token (compared in constant time). Unset, the route is open only when the
service listens on a loopback address (HOST 127.0.0.1, ::1 or localhost: a scraper on the same host); on any other
address it answers 503 not_configured, because the figures (accounts' traffic, error codes) are not for the public.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from gateway.errors import ApiError
from gateway.keys import SERVICES, SETTINGS

RELAY_PATH = "/api/messages/relay"
# The webhook paths' last segment, as a bounded platform label ("facebook" is the original Nexus Flow path).
_WEBHOOK_PLATFORMS = {
    "messenger": "messenger",
    "facebook": "messenger",
    "instagram": "instagram",
    "whatsapp": "whatsapp",
}

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    expected = settings.metrics_token
    if expected is None and not is_loopback(settings.host):
        raise ApiError(503, "not_configured", "set METRICS_TOKEN to expose /metrics on a non-loopback address (HOST)")
    if expected is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise ApiError(
                401, "unauthorized", "a valid metrics token is required", headers={"WWW-Authenticate": "Bearer"}
            )
    services = request.app[SERVICES]
    for state, count in (await services.status_reads.inbox_depth()).items():
        services.metrics.inbox_depth.labels(state).set(count)
    body = generate_latest(services.metrics.registry)
    # The classic text format (0.0.4), which every Prometheus version and scraper reads.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@web.middleware
async def count_relay(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts relay answers by status. Sits outside the error envelope, so it sees the status actually sent."""
    response = await handler(request)
    if request.path == RELAY_PATH:
        request.app[SERVICES].metrics.relay_requests.labels(str(response.status)).inc()
    return response


def is_loopback(host: str) -> bool:
    """True when HOST only accepts connections from this machine (0.0.0.0, :: and real addresses do not)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def webhook_platform(path: str) -> str:
    return _WEBHOOK_PLATFORMS.get(path.rstrip("/").rsplit("/", 1)[-1], "unknown")
