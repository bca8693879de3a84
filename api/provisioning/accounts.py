"""Accounts (the businesses) and their lock switch. Owners and viewers see only their own account."""

from __future__ import annotations

from aiohttp import web

from admin.access import own_account, require_admin
from api.bodies import Body
from api.jwt_auth import path_account, principal
from api.operations import JWT, OperationTable
from api.provisioning.models import AccountChanges, AccountDetail, AccountList, LockRequest
from api.shapes import AccountQuota
from core.errors import Forbidden
from core.models import Account, AccountSettings
from core.storage.accounts import AccountStore
from core.storage.quota import QuotaService


class Accounts:
    def __init__(self, accounts: AccountStore, quota: QuotaService) -> None:
        self._accounts = accounts
        self._quota = quota

    async def create_account(self, request: web.Request, body: Body[AccountSettings]) -> Account:
        require_admin(principal(request))
        settings = await body.parse()
        return await self._accounts.create(settings.name, settings.plan_id, settings.email)

    async def list_accounts(self, request: web.Request) -> AccountList:
        return AccountList(accounts=await self._accounts.list(only=own_account(principal(request))))

    async def get_account(self, request: web.Request) -> AccountDetail:
        _, account_id = path_account(request)
        account = await self._accounts.get(account_id)
        snapshot = await self._quota.snapshot(account_id)
        return AccountDetail(**account.model_dump(), quota=AccountQuota.of(snapshot))

    async def update_account(self, request: web.Request, body: Body[AccountChanges]) -> Account:
        who, account_id = path_account(request, "write")
        changes = (await body.parse()).sent()
        if "plan_id" in changes and not who.is_admin:
            raise Forbidden("only the platform operator may change an account's plan")
        return await self._accounts.update(account_id, changes)

    async def lock_account(self, request: web.Request, body: Body[LockRequest]) -> Account:
        _, account_id = path_account(request, "admin")
        return await self._accounts.set_locked(account_id, (await body.parse()).locked)


OPERATIONS = OperationTable(Accounts, tag="admin", security=JWT)
OPERATIONS.post(
    "/accounts",
    Accounts.create_account,
    summary="Create an account (a business)",
    description="Admin only. 404 if the plan does not exist.",
    errors=(403, 404),
)
OPERATIONS.get(
    "/accounts",
    Accounts.list_accounts,
    summary="Accounts",
    description="Admin: every account; owner or viewer: only their own.",
)
OPERATIONS.get(
    "/accounts/{account_id}",
    Accounts.get_account,
    summary="One account, with its quota this month",
)
OPERATIONS.patch(
    "/accounts/{account_id}",
    Accounts.update_account,
    summary="Change an account",
    description="Admin, or the account's owner; only the operator changes the plan (403 otherwise).",
    errors=(403,),
)
OPERATIONS.put(
    "/users/{account_id}/lock",
    Accounts.lock_account,
    summary="Lock or unlock an account",
    description="Admin only. A locked account's relay calls answer 403 account_locked. (The original Nexus Flow "
    "admin's route: accounts are its users.)",
    errors=(403,),
    status=200,
)
