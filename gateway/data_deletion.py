"""Meta's data deletion callback: a signed request to erase a user's data, a confirmation code, a status page.

Configure in the Meta app dashboard as `<PUBLIC_BASE_URL>/webhooks/meta/data-deletion`. The user id Meta sends
is erased wherever it is stored as a customer id (see core/erasure.py). The confirmation code is derived from
the user id and the app secret, so a repeated request gets the same code and the same status page.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from urllib.parse import parse_qs

import structlog
from aiohttp import web

from adapters.signed_request import SignedRequestError, parse_signed_request
from core.clock import iso_utc
from gateway.errors import ApiError
from gateway.keys import CLOCK, SERVICES, SETTINGS
from gateway.validation import read_limited

log = structlog.get_logger("gateway.data_deletion")

routes = web.RouteTableDef()
PATH = "/webhooks/meta/data-deletion"


@routes.post(PATH)
async def request_deletion(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    raw = await read_limited(request, request.app[SETTINGS].max_body_bytes)
    form = parse_qs(raw.decode("utf-8", "replace"))
    values = form.get("signed_request") or []
    if len(values) != 1:
        raise ApiError(400, "bad_request", "a form field signed_request is required")
    app_secret = request.app[SETTINGS].meta_app_secret
    if not app_secret:
        raise ApiError(503, "not_configured", "META_APP_SECRET is not set, so deletion requests cannot be verified")
    try:
        # Only the operator's app secret: a channel's own secret is supplied by a tenant, and must never be
        # able to order the erasure of other businesses' customers.
        signed = parse_signed_request(values[0], [app_secret])
    except SignedRequestError as exc:
        log.warning("data_deletion_refused", reason=str(exc))
        raise ApiError(400, "bad_request", str(exc)) from None
    code = hmac.new(signed.secret.encode(), b"data-deletion:" + signed.user_id.encode(), hashlib.sha256).hexdigest()[
        :20
    ]
    report = await services.eraser.erase_customer(signed.user_id, meta_only=True)
    now = request.app[CLOCK].now_ms()
    await services.db.execute(
        "INSERT INTO data_deletion_requests (confirmation_code, status, records_erased, requested_at, completed_at)"
        " VALUES (?, 'completed', ?, ?, ?) ON CONFLICT (confirmation_code) DO UPDATE SET"
        " records_erased = data_deletion_requests.records_erased + excluded.records_erased,"
        " completed_at = excluded.completed_at",
        (code, report.total, now, now),
    )
    log.info("data_deletion_completed", confirmation_code=code, records=report.total)
    return web.json_response({"url": f"{_base_url(request)}{PATH}/{code}", "confirmation_code": code})


@routes.get(PATH + "/{code}")
async def deletion_status(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    row = await request.app[SERVICES].db.fetch_one(
        "SELECT status, records_erased, requested_at, completed_at FROM data_deletion_requests"
        " WHERE confirmation_code = ?",
        (code,),
    )
    if row is None:
        raise ApiError(404, "not_found", "no data deletion request has this confirmation code")
    done = row["completed_at"]
    body = (
        "<!doctype html><meta charset=utf-8><title>Data deletion request</title>"
        f"<h1>Data deletion request {html.escape(code)}</h1>"
        f"<p>Status: <strong>{html.escape(row['status'])}</strong>.</p>"
        f"<p>Received {iso_utc(int(row['requested_at']))}"
        + (f", completed {iso_utc(int(done))}" if done else "")
        + f". {int(row['records_erased'])} stored records about you were erased.</p>"
    )
    return web.Response(text=body, content_type="text/html")


def _base_url(request: web.Request) -> str:
    configured = request.app[SETTINGS].public_base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"
