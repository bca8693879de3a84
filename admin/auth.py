"""The admin sub-application's own authentication middleware and the checks handlers make with it."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from admin.tokens import InvalidToken, Principal, verify_token
from core.errors import NotFound
from gateway.errors import ApiError
from gateway.keys import SETTINGS

PRINCIPAL = web.RequestKey("principal", Principal)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    secret = request.config_dict[SETTINGS].admin_jwt_secret
    if not secret:
        raise ApiError(503, "not_configured", "the admin API is disabled: ADMIN_JWT_SECRET is not set")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        principal = verify_token(token.strip(), secret)
    except InvalidToken as exc:
        raise ApiError(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    request[PRINCIPAL] = principal
    return await handler(request)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise ApiError(403, "forbidden", "only the platform operator may do this")


def require_writer(who: Principal) -> None:
    if not who.can_write:
        raise ApiError(403, "forbidden", "this token is read-only")


def check_account(who: Principal, account_id: str) -> None:
    """Another account's resource looks exactly like one that does not exist."""
    if not who.is_admin and who.account_id != account_id:
        raise NotFound("account")


def path_account(request: web.Request, need: Literal["read", "write", "admin"] = "read") -> tuple[Principal, str]:
    """The caller and the `{account_id}` of the path, once the caller may `need` it.

    The account check comes first, so another account's id is a 404 whatever the role asks.
    """
    who = principal(request)
    account_id = request.match_info["account_id"]
    check_account(who, account_id)
    if need == "write":
        require_writer(who)
    elif need == "admin":
        require_admin(who)
    return who, account_id
