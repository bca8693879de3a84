"""An account's notification endpoint: where it is told of handoffs (core/notifier.py signs and sends them)."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field
from yarl import URL

from api.bodies import Body
from api.errors import ApiError
from api.jwt_auth import path_account
from api.operations import JWT, OperationTable
from api.shapes import ApiModel
from core.fields import Text
from core.notifier import SIGNATURE_HEADER
from core.secrets import SecretsError
from core.storage.accounts import AccountStore
from core.storage.notifications import Delivery, NotificationStore

RECENT = 50


class EndpointRequest(ApiModel):
    url: Annotated[str, Text(2000)] = Field(description="an http:// or https:// URL that takes a POST")


class EndpointSet(ApiModel):
    url: str
    secret: str = Field(
        description="the key the notifications are signed with: shown in this answer only, stored encrypted"
    )
    signature_header: Literal["X-Nexus-Signature-256"] = Field(
        description="each POST carries `sha256=` and the hex HMAC-SHA256 of its raw body under `secret`"
    )


class Notifications(ApiModel):
    url: str | None = Field(description="the endpoint; null when none is set")
    deliveries: list[Delivery] = Field(description=f"the newest {RECENT} notifications, newest first")


class NotificationEndpoints:
    def __init__(self, notifications: NotificationStore, accounts: AccountStore) -> None:
        self._notifications = notifications
        self._accounts = accounts

    async def set_endpoint(self, request: web.Request, body: Body[EndpointRequest]) -> EndpointSet:
        _, account_id = path_account(request, "write")
        await self._accounts.get(account_id)
        sent = await body.parse()
        url = _endpoint_url(sent.url)
        try:
            secret = await self._notifications.set_endpoint(account_id, url)
        except SecretsError:
            raise ApiError(
                503, "not_configured", "SECRETS_KEY is not set, so a signing key cannot be stored; ask the operator"
            ) from None
        return EndpointSet(url=url, secret=secret, signature_header=SIGNATURE_HEADER)

    async def read_endpoint(self, request: web.Request) -> Notifications:
        _, account_id = path_account(request)
        await self._accounts.get(account_id)
        endpoint = await self._notifications.endpoint(account_id)
        return Notifications(
            url=None if endpoint is None else endpoint.url,
            deliveries=await self._notifications.recent(account_id, RECENT),
        )

    async def remove_endpoint(self, request: web.Request) -> None:
        _, account_id = path_account(request, "write")
        await self._accounts.get(account_id)
        await self._notifications.clear_endpoint(account_id)


def _endpoint_url(raw: str) -> str:
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError):
        raise ApiError(400, "bad_request", "the url is not valid") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ApiError(400, "bad_request", "the url must be http:// or https:// with a host")
    if url.user is not None or url.password is not None:
        raise ApiError(400, "bad_request", "the url must not carry a user name or password")
    return str(url.with_fragment(None))


OPERATIONS = OperationTable(NotificationEndpoints, tag="admin", security=JWT)
OPERATIONS.put(
    "/accounts/{account_id}/notifications",
    NotificationEndpoints.set_endpoint,
    summary="Set where the account is told of handoffs, with a new signing key",
    description="Admin, or the account's owner. Each notification is a JSON POST (`X-Nexus-Event`, e.g. "
    "`conversation.handoff`) signed in `X-Nexus-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the "
    "`secret` of this answer, which is not shown again (set the endpoint again for a new one). Verify the signature "
    "on the raw bytes, in constant time, before parsing; a body's `id` names it, so a repeat can be dropped. A 2xx "
    "answer within 10 s delivers it; otherwise it is tried again for about 11 hours with growing delays. Addresses "
    "that are loopback, private or link-local are refused when sending unless the operator allows them "
    "(NOTIFY_ALLOW_PRIVATE). 503 `not_configured`: SECRETS_KEY is not set.",
    status=200,
    errors=(403, 503),
)
OPERATIONS.get(
    "/accounts/{account_id}/notifications",
    NotificationEndpoints.read_endpoint,
    summary="The account's notification endpoint and how its newest notifications fared",
)
OPERATIONS.delete(
    "/accounts/{account_id}/notifications",
    NotificationEndpoints.remove_endpoint,
    summary="Stop notifications: the endpoint is removed and what waited is given up on",
    errors=(403,),
)
