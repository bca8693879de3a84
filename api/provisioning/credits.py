"""The credit ledger: only the operator adds entries; the account's owner and viewers may read it."""

from __future__ import annotations

from aiohttp import web

from api.bodies import Body
from api.errors import bad_request
from api.jwt_auth import path_account
from api.operations import JWT, OperationTable
from api.provisioning.models import CreditLedgerView, CreditRequest
from core.models import CreditEntry
from core.storage.credits import CreditLedger


class Credits:
    def __init__(self, credits: CreditLedger) -> None:
        self._credits = credits

    async def add_credits(self, request: web.Request, body: Body[CreditRequest]) -> CreditEntry:
        who, account_id = path_account(request, "admin")
        entry = await body.parse()
        if entry.tokens == 0:
            raise bad_request("'tokens' may not be zero", field="tokens")
        if entry.kind in ("purchase", "grant") and entry.tokens < 0:
            raise bad_request(
                f"a {entry.kind} adds tokens; use 'adjustment' or 'refund' to remove them", field="tokens"
            )
        return await self._credits.add(account_id, entry.kind, entry.tokens, entry.note, created_by=who.subject)

    async def list_credits(self, request: web.Request) -> CreditLedgerView:
        _, account_id = path_account(request)
        balance = await self._credits.balance(account_id)
        return CreditLedgerView(balance_tokens=balance, entries=await self._credits.list(account_id))


OPERATIONS = OperationTable(Credits, tag="admin", security=JWT)
OPERATIONS.post(
    "/accounts/{account_id}/credits",
    Credits.add_credits,
    summary="Add a credit ledger entry (tokens on top of the plan)",
    description="Admin only.",
    errors=(403,),
)
OPERATIONS.get(
    "/accounts/{account_id}/credits",
    Credits.list_credits,
    summary="The account's credit ledger and balance",
)
