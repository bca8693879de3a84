"""Which account a list or report covers, from the caller and the `account_id` it asked for.

Owners and viewers always get their own account (naming another is a 404, like an id that does not exist); the
operator gets the account asked for (an unknown one is a 404, not an empty list) or every account (None).
"""

from __future__ import annotations

from admin.access import check_account, own_account
from admin.tokens import Principal
from api.errors import bad_request
from core.storage.accounts import AccountStore


async def account_scope(who: Principal, requested: str | None, accounts: AccountStore) -> str | None:
    """The one account a list is about, or None for the operator's every-account view."""
    if requested is None:
        return own_account(who)
    check_account(who, requested)
    if who.is_admin:
        await accounts.get(requested)
    return requested


async def required_account(who: Principal, requested: str | None, accounts: AccountStore) -> str:
    """Like account_scope, but the operator must name the account (a per-account figure has no total)."""
    account_id = await account_scope(who, requested, accounts)
    if account_id is None:
        raise bad_request("'account_id' is required for an admin token", field="account_id")
    return account_id
