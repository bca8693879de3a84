"""Meta's data deletion callback: a signed request to erase a user's data, a confirmation code, a status page.

Configure in the Meta app dashboard as `<PUBLIC_BASE_URL>/webhooks/meta/data-deletion`. The user id Meta sends
is erased wherever it is stored as a customer id (see core/storage/erasure.py). The confirmation code is derived
from the user id and the app secret, so a repeated request gets the same code and the same status page.
"""

from __future__ import annotations

import hashlib
import hmac
import html

import structlog
from aiohttp import web

from adapters.signed_request import SignedRequestError, parse_signed_request
from api.bodies import Form
from api.errors import ApiError
from api.operations import Answer, OperationTable
from api.webhooks.models import DataDeletionForm, DataDeletionReceipt
from core.clock import iso_utc
from core.storage.data_deletion import DataDeletionStore
from core.storage.erasure import Eraser

log = structlog.get_logger("api.webhooks.data_deletion")

PATH = "/webhooks/meta/data-deletion"


class DataDeletion:
    def __init__(
        self, eraser: Eraser, requests: DataDeletionStore, *, app_secret: str | None, public_base_url: str | None
    ) -> None:
        self._eraser = eraser
        self._requests = requests
        # Only the operator's app secret: a channel's own secret is supplied by a tenant, and must never be able to
        # order the erasure of other businesses' customers.
        self._app_secret = app_secret
        self._public_base_url = public_base_url

    async def request_data_deletion(self, request: web.Request, form: Form[DataDeletionForm]) -> DataDeletionReceipt:
        sent = await form.parse()
        if not self._app_secret:
            raise ApiError(503, "not_configured", "META_APP_SECRET is not set, so deletion requests cannot be verified")
        try:
            signed = parse_signed_request(sent.signed_request, [self._app_secret])
        except SignedRequestError as exc:
            log.warning("data_deletion_refused", reason=str(exc))
            raise ApiError(400, "bad_request", str(exc)) from None
        digest = hmac.new(signed.secret.encode(), b"data-deletion:" + signed.user_id.encode(), hashlib.sha256)
        code = digest.hexdigest()[:20]
        report = await self._eraser.erase_customer(signed.user_id, meta_only=True)
        await self._requests.completed(code, report.total)
        log.info("data_deletion_completed", confirmation_code=code, records=report.total)
        return DataDeletionReceipt(url=f"{self._base_url(request)}{PATH}/{code}", confirmation_code=code)

    async def data_deletion_status(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        found = await self._requests.get(code)
        if found is None:
            raise ApiError(404, "not_found", "no data deletion request has this confirmation code")
        body = (
            "<!doctype html><meta charset=utf-8><title>Data deletion request</title>"
            f"<h1>Data deletion request {html.escape(code)}</h1>"
            f"<p>Status: <strong>{html.escape(found.status)}</strong>.</p>"
            f"<p>Received {iso_utc(found.requested_at)}"
            + (f", completed {iso_utc(found.completed_at)}" if found.completed_at else "")
            + f". {found.records_erased} stored records about you were erased.</p>"
        )
        return web.Response(text=body, content_type="text/html")

    def _base_url(self, request: web.Request) -> str:
        configured = self._public_base_url
        return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


OPERATIONS = OperationTable(DataDeletion, tag="webhooks")
OPERATIONS.post(
    PATH,
    DataDeletion.request_data_deletion,
    summary="Meta's data deletion callback: erase what is stored about a Meta user",
    description="Authenticated by the signed_request itself (HMAC-SHA256 with META_APP_SECRET).",
    status=200,
    success={200: "Erased"},
    errors=(503,),
)
OPERATIONS.get(
    PATH + "/{code}",
    DataDeletion.data_deletion_status,
    summary="The status page of a data deletion request",
    parameters={"code": "the confirmation code the callback answered"},
    answers={200: Answer("A small HTML page saying what was erased", content={"text/html": {"type": "string"}})},
)
