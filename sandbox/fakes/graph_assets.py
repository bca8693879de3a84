"""What each access token controls, for the fake Graph's read endpoints (`GET /{version}/me`, `GET /{version}/{id}`).

Graph answers `/me` with the Page a Page token belongs to (and, with `fields=instagram_business_account`, the
Instagram professional account linked to that Page); a WhatsApp phone number node is readable only with a token
that has access to its business account, otherwise (#100) subcode 33. `grant()` says what a token controls.
`implicit=True` follows the test harness's naming instead: a token `token-<id>` controls `<id>` (Page, Instagram
account and phone number alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UNSUPPORTED_GET = (
    "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, "
    "or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
)
IMPLICIT_PREFIX = "token-"


@dataclass(slots=True)
class Grant:
    page_id: str | None = None
    instagram_id: str | None = None
    phone_number_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class GraphReadCall:
    object_id: str
    fields: str
    token: str | None


class GraphAssets:
    def __init__(self, *, implicit: bool) -> None:
        self.implicit = implicit
        self.grants: dict[str, Grant] = {}

    def grant(
        self,
        token: str,
        *,
        page_id: str | None = None,
        instagram_id: str | None = None,
        phone_number_ids: tuple[str, ...] = (),
    ) -> None:
        self.grants[token] = Grant(page_id, instagram_id, set(phone_number_ids))

    def answer(self, object_id: str, fields: str, token: str) -> tuple[int, dict[str, Any]] | tuple[int, str]:
        """(200, body) or (400, message of a (#100) subcode 33 error)."""
        grant = self._grant(token)
        wanted = {f.strip() for f in fields.split(",") if f.strip()} or {"id"}
        if object_id == "me":
            # A token that is not a Page token answers as the app user it belongs to.
            body: dict[str, Any] = {"id": grant.page_id or f"user-{abs(hash(token)) % 10**12}"}
            if "instagram_business_account" in wanted and grant.instagram_id:
                body["instagram_business_account"] = {"id": grant.instagram_id}
            return 200, body
        if object_id in grant.phone_number_ids:
            body = {"id": object_id}
            if "display_phone_number" in wanted:
                body["display_phone_number"] = "+1 555-0100"
            return 200, body
        return 400, UNSUPPORTED_GET.format(id=object_id)

    def _grant(self, token: str) -> Grant:
        if token in self.grants:
            return self.grants[token]
        if self.implicit and token.startswith(IMPLICIT_PREFIX) and len(token) > len(IMPLICIT_PREFIX):
            asset = token[len(IMPLICIT_PREFIX) :]
            return Grant(page_id=asset, instagram_id=asset, phone_number_ids={asset})
        return Grant()
