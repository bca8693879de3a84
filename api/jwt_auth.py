"""The JWT surfaces' authentication middleware, and the caller it leaves on each request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from admin.access import check_account, require_admin, require_writer
from admin.tokens import InvalidToken, Principal, verify_token
from api.errors import ApiError

PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass(frozen=True, slots=True)
class JwtConfig:
    secret: str | None  # ADMIN_JWT_SECRET; unset: every JWT route answers 503 not_configured
    max_ttl_seconds: int  # a token may live at most this long (exp - iat)


JWT_CONFIG = web.AppKey("api.jwt_config", JwtConfig)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.config_dict[JWT_CONFIG]
    if not config.secret:
        raise ApiError(503, "not_configured", "the admin API is disabled: ADMIN_JWT_SECRET is not set")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        principal = verify_token(token.strip(), config.secret, max_ttl=config.max_ttl_seconds)
    except InvalidToken as exc:
        raise ApiError(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    request[PRINCIPAL] = principal
    return await handler(request)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


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


def bearer(request: web.Request) -> str:
    """The bearer credential of the Authorization header, or "" (API keys and JWTs alike)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
