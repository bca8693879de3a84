"""`GET /api/admin/audit`: the audit trail (api/audit_trail.py records it), newest first, one page at a time."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from admin.access import require_admin
from api.bodies import Query
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.pagination import PageQuery, next_cursor
from api.query import AccountId
from api.scopes import account_scope
from api.shapes import ApiModel
from core.storage.accounts import AccountStore
from core.storage.audit import AuditEntry, AuditStore


class AuditQuery(PageQuery):
    account_id: AccountId | None = Field(
        default=None, description="one account (404 if unknown); default every account"
    )


class AuditPage(ApiModel):
    entries: list[AuditEntry] = Field(description="newest first")
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last page")


class AuditTrail:
    def __init__(self, audit: AuditStore, accounts: AccountStore) -> None:
        self._audit = audit
        self._accounts = accounts

    async def list_audit(self, request: web.Request, query: Query[AuditQuery]) -> AuditPage:
        who = principal(request)
        # As everywhere: another account's id is a 404 first, whatever the role; then only the operator reads; then
        # the rest of the query.
        account_id = await account_scope(who, query.parse_field("account_id"), self._accounts)
        require_admin(who)
        asked = query.parse()
        page = asked.page((int, str))
        entries = await self._audit.page(account_id, after=page.after, limit=page.limit + 1)  # type: ignore[arg-type]
        return AuditPage(
            entries=entries[: page.limit],
            next_cursor=next_cursor([(e.created_at, e.id) for e in entries], page.limit),
        )


OPERATIONS = OperationTable(AuditTrail, tag="admin", security=JWT)
OPERATIONS.get(
    "/audit",
    AuditTrail.list_audit,
    summary="The audit trail: every mutation through the JWT APIs, newest first",
    description="Admin only. Bodies are never recorded: only the names of the fields sent.",
    errors=(403,),
)
