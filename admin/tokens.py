"""Admin and dashboard JWTs: HS256 only, every claim required, issuer and audience pinned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jwt

ISSUER = "nexus-gateway"
AUDIENCE = "nexus-gateway-admin"
ALGORITHM = "HS256"  # pinned: the verifier accepts this one algorithm and nothing else
ROLES = ("admin", "owner", "viewer")
# Tolerated clock skew between the host that minted a token and this one.
LEEWAY_SECONDS = 5
# The longest lifetime (exp - iat) a token may have unless the operator sets another (ADMIN_JWT_MAX_TTL_SECONDS):
# a leaked token that never expires cannot be revoked short of rotating ADMIN_JWT_SECRET.
DEFAULT_MAX_TTL_SECONDS = 30 * 24 * 3600
# Header parameters that point at or carry a key: meaningless with one shared HS256 secret, so a token carrying
# one was not made by us (RFC 8725 §3.10).
_FOREIGN_KEY_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
Role = Literal["admin", "owner", "viewer"]


class InvalidToken(Exception):
    """Missing, expired, badly signed or malformed; the message is safe to show the caller."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    account_id: str | None  # the one account an owner or viewer may see; None for an admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "owner")


def mint_token(secret: str, *, role: str, sub: str, account_id: str | None, ttl: int, now: int) -> str:
    """A signed token; `now` and `ttl` in seconds."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role != "admin" and not account_id:
        raise ValueError(f"a {role} token needs an account id")
    claims: dict[str, object] = {"sub": sub, "role": role, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
    if account_id:
        claims["account_id"] = account_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, *, max_ttl: int = DEFAULT_MAX_TTL_SECONDS) -> Principal:
    try:
        if _FOREIGN_KEY_HEADERS & set(jwt.get_unverified_header(token)):
            raise InvalidToken("the token names a key source this service does not use")
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("the token is not valid") from None
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int | float) or not isinstance(iat, int | float) or exp - iat > max_ttl:
        raise InvalidToken(f"the token lives longer than the {max_ttl} s this service accepts (exp - iat)")
    sub, role, account_id = claims.get("sub"), claims.get("role"), claims.get("account_id")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("the token has no subject")
    if role not in ROLES:
        raise InvalidToken("the token has no valid role")
    if role == "admin":
        return Principal(sub, "admin", None)
    if not isinstance(account_id, str) or not account_id:
        raise InvalidToken(f"a {role} token must name its account_id")
    return Principal(sub, role, account_id)
