"""Meta webhooks: the GET handshake and signed POST deliveries, for all three products.

The POST path is: read the raw body (size-limited) -> verify X-Hub-Signature-256 against every candidate app
secret -> parse every event -> route each to its channel -> commit all of them to the inbox -> 200. No model
call happens here. A bad signature is a 401 and stores nothing; a signed body we cannot use (bad JSON, unknown
shape, unknown page) is still a 200, kept in `webhook_unrouted`: answering 5xx would make Meta retry it for
days and then unsubscribe the app.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from adapters import instagram, messenger, whatsapp
from adapters.events import EventKind, InboundEvent, event_to_json
from adapters.meta_auth import SIGNATURE_HEADER, handshake_challenge, matching_secret
from core.ids import new_id
from core.inbox import InboxRow, UnroutedRow
from gateway.errors import ApiError
from gateway.keys import SERVICES, SETTINGS
from gateway.metrics_route import webhook_platform
from gateway.validation import read_limited

log = structlog.get_logger("gateway.webhooks")

PARSERS: Mapping[str, Callable[[Mapping[str, Any]], list[InboundEvent]]] = {
    "page": messenger.parse,
    "instagram": instagram.parse,
    "whatsapp_business_account": whatsapp.parse,
}
# Events the worker acts on: customer messages to answer (unsupported ones get the short media answer), and
# echoes (a human answering pauses the bot).
_WORKER_KINDS = frozenset({EventKind.MESSAGE, EventKind.POSTBACK, EventKind.ECHO, EventKind.UNSUPPORTED})
PATHS = (
    "/webhooks/messenger",
    "/webhooks/instagram",
    "/webhooks/whatsapp",
    # The original Nexus Flow paths, kept so existing Meta app configurations keep working.
    "/api/messaging/facebook",
    "/api/messaging/instagram",
    "/api/messaging/whatsapp",
)


async def verify(request: web.Request) -> web.Response:
    directory = request.app[SERVICES].directory
    challenge = handshake_challenge(request.query, await directory.verify_tokens())
    if challenge is None:
        log.warning("webhook_handshake_refused", path=request.path)
        raise ApiError(403, "forbidden", "hub.mode must be subscribe and hub.verify_token must match")
    return web.Response(text=challenge, content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    source = webhook_platform(request.path)
    try:
        raw = await read_limited(request, request.app[SETTINGS].max_webhook_bytes)
    except ApiError:
        services.metrics.refused(source, "too_large")
        raise
    secret = matching_secret(raw, request.headers.get(SIGNATURE_HEADER), await services.directory.signing_secrets())
    if secret is None:
        log.warning("webhook_signature_rejected", path=request.path, bytes=len(raw))
        services.metrics.refused(source, "unsigned")
        raise ApiError(401, "unauthorized", f"missing or invalid {SIGNATURE_HEADER}")
    rows: list[InboxRow] = []
    unrouted: list[UnroutedRow] = []
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        unrouted.append(_unrouted("unknown", "", "unknown", "malformed_json", _raw_excerpt(raw)))
        payload = None
    if payload is not None:
        kind = payload.get("object") if isinstance(payload, dict) else None
        parse = PARSERS.get(kind) if isinstance(kind, str) else None
        if parse is None:
            platform = _text(str(kind)[:64]) if kind is not None else "unknown"
            unrouted.append(_unrouted(platform, "", "unknown", "unknown_object", json.dumps(payload)[:100_000]))
        else:
            for event in parse(payload):
                await _route(services, event, secret, rows, unrouted)
    started = time.monotonic()
    result = await services.inbox_writer.write(rows, unrouted)
    waited = time.monotonic() - started
    services.metrics.webhook_commit_seconds.observe(waited)
    services.workers.acknowledged(waited * 1000)  # the workers give way if they slowed this down
    services.metrics.delivery(source, result.stored, result.duplicates, result.unrouted)
    if result.stored:
        services.workers.wake()
    log.info(
        "webhook_received",
        path=request.path,
        stored=result.stored,
        duplicates=result.duplicates,
        unrouted=result.unrouted,
    )
    return web.json_response({"stored": result.stored, "duplicates": result.duplicates, "unrouted": result.unrouted})


async def _route(services: Any, event: InboundEvent, secret: str, rows: list[InboxRow], unrouted: list[UnroutedRow]):
    if event.kind is EventKind.UNKNOWN:
        reason = "unknown_shape"
    else:
        channel, reason = await services.directory.route(event.platform, event.channel_external_id, secret)
        if channel is not None:
            rows.append(
                InboxRow(
                    id=new_id("evt"),
                    channel_id=channel.id,
                    event_key=_text(event.event_key),
                    kind=event.kind.value,
                    customer_id=None if event.customer_id is None else _text(event.customer_id),
                    platform_ts=event.timestamp_ms,
                    event_json=event_to_json(event),
                    state="pending" if event.kind in _WORKER_KINDS and not event.standby else "recorded",
                )
            )
            return
    unrouted.append(
        _unrouted(
            event.platform.value, _text(event.channel_external_id), event.kind.value, reason, event_to_json(event)
        )
    )


def _text(value: str) -> str:
    """Ids as the database can store them: a lone surrogate (legal in JSON) would make the commit fail."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _unrouted(platform: str, external_id: str, kind: str, reason: str, event_json: str) -> UnroutedRow:
    return UnroutedRow(new_id("unr"), platform, external_id, kind, reason, event_json)


def _raw_excerpt(raw: bytes) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    return json.dumps({"sha256": digest, "bytes": len(raw), "head": raw[:2000].decode("utf-8", "replace")})


def add_routes(app: web.Application) -> None:
    for path in PATHS:
        app.router.add_get(path, verify)
        app.router.add_post(path, receive)
