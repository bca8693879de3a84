"""`GET /api/user/quota`: the caller's account allowance this month, what is used, held and left, and credits.

Owners and viewers read their own account; an admin names one with `account_id` (a quota has no total).
"""

from __future__ import annotations

from aiohttp import web

from api.bodies import Query
from api.dashboard.models import UserQuota
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.query import AccountQuery
from api.scopes import required_account
from api.shapes import QuotaDetail
from core.storage.accounts import AccountStore
from core.storage.quota import QuotaService


class UserQuotas:
    def __init__(self, quota: QuotaService, accounts: AccountStore) -> None:
        self._quota = quota
        self._accounts = accounts

    async def user_quota(self, request: web.Request, query: Query[AccountQuery]) -> UserQuota:
        account_id = await required_account(principal(request), query.parse_field("account_id"), self._accounts)
        query.parse()  # nothing else to read; unknown parameters are ignored, as everywhere but exports and status
        detail = QuotaDetail.of(await self._quota.snapshot(account_id))
        return UserQuota(**detail.model_dump(), account_id=account_id)


OPERATIONS = OperationTable(UserQuotas, tag="dashboard", security=JWT)
OPERATIONS.get(
    "/quota",
    UserQuotas.user_quota,
    summary="The caller's token allowance this month: used, reserved, remaining, credits and period",
    description="Owners and viewers read their own account (another account's `account_id` is 404); an admin must "
    "name the account with `account_id` (400 without it, 404 if unknown).",
    operation_id="getUserQuota",
)
