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
from adapters.text_clean import clean_text
from api.bodies import Query, read_limited
from api.errors import ApiError
from api.operations import META_SIGNATURE, Answer, OperationTable
from api.webhooks.models import Handshake, WebhookReceipt
from core.channel_directory import ChannelDirectory
from core.ids import new_id
from core.metrics import Metrics
from core.storage.inbox import InboxRow, InboxWriter, UnroutedRow

log = structlog.get_logger("api.webhooks")

PARSERS: Mapping[str, Callable[[Mapping[str, Any]], list[InboundEvent]]] = {
    "page": messenger.parse,
    "instagram": instagram.parse,
    "whatsapp_business_account": whatsapp.parse,
}
# Events the worker acts on: customer messages to answer (unsupported ones get the short media answer), and
# echoes (a human answering pauses the bot).
_WORKER_KINDS = frozenset({EventKind.MESSAGE, EventKind.POSTBACK, EventKind.ECHO, EventKind.UNSUPPORTED})
# Each product's path, and the original Nexus Flow path kept so existing Meta app configurations keep working.
PATHS = {
    "messenger": ("/webhooks/messenger", "/api/messaging/facebook"),
    "instagram": ("/webhooks/instagram", "/api/messaging/instagram"),
    "whatsapp": ("/webhooks/whatsapp", "/api/messaging/whatsapp"),
}
_NAMES = {"messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp"}


class Deliveries:
    def __init__(
        self,
        directory: ChannelDirectory,
        inbox: InboxWriter,
        metrics: Metrics,
        *,
        max_body_bytes: int,
    ) -> None:
        self._directory = directory
        self._inbox = inbox
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    async def verify_webhook(self, request: web.Request, query: Query[Handshake]) -> web.Response:
        handshake = query.parse()
        offered = handshake.model_dump(by_alias=True, exclude_none=True)
        challenge = handshake_challenge(offered, await self._directory.verify_tokens())
        if challenge is None:
            log.warning("webhook_handshake_refused", path=request.path)
            raise ApiError(403, "forbidden", "hub.mode must be subscribe and hub.verify_token must match")
        return web.Response(text=challenge, content_type="text/plain")

    async def receive_webhook(self, request: web.Request) -> WebhookReceipt:
        source = webhook_platform(request.path)
        try:
            raw = await read_limited(request, self._max_body_bytes)
        except ApiError as exc:
            self._metrics.refused(source, "too_large" if exc.status == 413 else "too_slow")
            raise
        secret = matching_secret(raw, request.headers.get(SIGNATURE_HEADER), await self._directory.signing_secrets())
        if secret is None:
            log.warning("webhook_signature_rejected", path=request.path, bytes=len(raw))
            self._metrics.refused(source, "unsigned")
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
                platform = clean_text(str(kind)[:64]) if kind is not None else "unknown"
                unrouted.append(_unrouted(platform, "", "unknown", "unknown_object", json.dumps(payload)[:100_000]))
            else:
                for event in parse(payload):
                    await self._route(event, secret, rows, unrouted)
        started = time.monotonic()
        result = await self._inbox.write(rows, unrouted)
        waited = time.monotonic() - started
        self._metrics.webhook_commit_seconds.observe(waited)
        self._metrics.delivery(source, result.stored, result.duplicates, result.unrouted)
        log.info(
            "webhook_received",
            path=request.path,
            stored=result.stored,
            duplicates=result.duplicates,
            unrouted=result.unrouted,
        )
        return WebhookReceipt(stored=result.stored, duplicates=result.duplicates, unrouted=result.unrouted)

    async def _route(self, event: InboundEvent, secret: str, rows: list[InboxRow], unrouted: list[UnroutedRow]) -> None:
        if event.kind is EventKind.UNKNOWN:
            reason = "unknown_shape"
        else:
            channel, reason = await self._directory.route(event.platform, event.channel_external_id, secret)
            if channel is not None:
                rows.append(
                    InboxRow(
                        id=new_id("evt"),
                        channel_id=channel.id,
                        event_key=event.event_key,  # the parsers cleaned every id (adapters/text_clean.py)
                        kind=event.kind.value,
                        customer_id=event.customer_id,
                        platform_ts=event.timestamp_ms,
                        event_json=event_to_json(event),
                        state="pending" if event.kind in _WORKER_KINDS and not event.standby else "recorded",
                    )
                )
                return
        unrouted.append(
            _unrouted(event.platform.value, event.channel_external_id, event.kind.value, reason, event_to_json(event))
        )


def webhook_platform(path: str) -> str:
    """The platform a webhook path serves, as a bounded metrics label."""
    for platform, paths in PATHS.items():
        if path.rstrip("/") in paths:
            return platform
    return "unknown"


def _unrouted(platform: str, external_id: str, kind: str, reason: str, event_json: str) -> UnroutedRow:
    return UnroutedRow(new_id("unr"), platform, external_id, kind, reason, event_json)


def _raw_excerpt(raw: bytes) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    return json.dumps({"sha256": digest, "bytes": len(raw), "head": raw[:2000].decode("utf-8", "replace")})


OPERATIONS = OperationTable(Deliveries, tag="webhooks")
for _platform, (_path, _legacy) in PATHS.items():
    for _where, _suffix in ((_path, _platform), (_legacy, f"legacy{_legacy.rsplit('/', 1)[1].capitalize()}")):
        OPERATIONS.get(
            _where,
            Deliveries.verify_webhook,
            summary=f"{_NAMES[_platform]} webhook subscription handshake",
            operation_id=f"verifyWebhook_{_suffix}",
            answers={200: Answer("The challenge, verbatim", content={"text/plain": {"type": "string"}})},
            errors=(403,),
        )
        OPERATIONS.post(
            _where,
            Deliveries.receive_webhook,
            summary=f"{_NAMES[_platform]} webhook delivery (signed)",
            description="Verified against X-Hub-Signature-256, then every event is committed to the inbox before the "
            "200; replies go out later through the Graph API. A signed body that cannot be used (bad JSON, unknown "
            "object, unknown page) is still a 200 and kept aside, so Meta does not retry it for days.",
            operation_id=f"receiveWebhook_{_suffix}",
            security=META_SIGNATURE,
            status=200,
            success={200: "Every event of the body is durably stored (or kept aside)"},
            errors=(413,),
            request_content="application/json",
        )
