"""What a principal may touch: another account's objects do not exist for it, viewers only read."""

from __future__ import annotations

from admin.tokens import Principal
from core.errors import Forbidden, NotFound


def check_account(who: Principal, account_id: str) -> None:
    """Another account's resource looks exactly like one that does not exist."""
    if not who.is_admin and who.account_id != account_id:
        raise NotFound("account")


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise Forbidden("only the platform operator may do this")


def require_writer(who: Principal) -> None:
    if not who.can_write:
        raise Forbidden("this token is read-only")


def own_account(who: Principal) -> str | None:
    """The one account an owner or viewer may see; None for the operator (every account)."""
    return None if who.is_admin else who.account_id
