"""Admin API authentication: every bad token is a 401 envelope and never reaches the handler."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from packaging.version import Version

from admin.tokens import DEFAULT_MAX_TTL_SECONDS, LEEWAY_SECONDS
from gateway.cli import main as cli_main
from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support.harness import JWT_SECRET, auth, expect, provision, token

ISSUER = "nexus-gateway"
AUDIENCE = "nexus-gateway-admin"
WRONG_SECRET = "another-secret-0123456789-abcdefghijklm"
PLAN_BODY = {"name": "gold", "monthly_token_limit": 1000, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    """Valid admin claims; an override of None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "ops",
        "role": "admin",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any], *, key: str = JWT_SECRET, alg: str = "HS256") -> str:
    if alg == "HS256":
        return jwt.encode(claims, key, algorithm=alg)
    # Built by hand: PyJWT would (rightly) warn that this key is short for HS384/HS512.
    digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key.encode(), signing_input.encode(), digest).digest())}"


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _alg_none() -> dict[str, str]:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    return _bearer(f"{header}.{payload}.")


def _tampered() -> dict[str, str]:
    """A genuine viewer token whose payload was rewritten to an admin one; the signature is the original."""
    header, _, signature = token("viewer", "acc_x").split(".")
    forged = _b64(json.dumps(_claims(role="admin", account_id="acc_x")).encode())
    return _bearer(f"{header}.{forged}.{signature}")


BAD_AUTH: dict[str, Callable[[], dict[str, str]]] = {
    "no_header": lambda: {},
    "basic_scheme": lambda: {"Authorization": f"Basic {token()}"},
    "token_scheme": lambda: {"Authorization": f"Token {token()}"},
    "bearer_without_token": lambda: {"Authorization": "Bearer "},
    "garbage": lambda: _bearer("not-a-jwt"),
    "garbage_three_parts": lambda: _bearer("aaa.bbb.ccc"),
    "alg_none": _alg_none,
    "hs256_wrong_key": lambda: _bearer(_signed(_claims(), key=WRONG_SECRET)),
    "hs384_right_key": lambda: _bearer(_signed(_claims(), alg="HS384")),
    "hs512_right_key": lambda: _bearer(_signed(_claims(), alg="HS512")),
    "expired": lambda: _bearer(_signed(_claims(iat=int(time.time()) - 700, exp=int(time.time()) - 10))),
    "missing_exp": lambda: _bearer(_signed(_claims(exp=None))),
    "missing_iat": lambda: _bearer(_signed(_claims(iat=None))),
    "missing_iss": lambda: _bearer(_signed(_claims(iss=None))),
    "missing_aud": lambda: _bearer(_signed(_claims(aud=None))),
    "missing_sub": lambda: _bearer(_signed(_claims(sub=None))),
    "empty_sub": lambda: _bearer(_signed(_claims(sub=""))),
    "non_string_sub": lambda: _bearer(_signed(_claims(sub=42))),
    "wrong_iss": lambda: _bearer(_signed(_claims(iss="someone-else"))),
    "wrong_aud": lambda: _bearer(_signed(_claims(aud="nexus-gateway-dashboard"))),
    "role_missing": lambda: _bearer(_signed(_claims(role=None))),
    "role_superuser": lambda: _bearer(_signed(_claims(role="superuser"))),
    "role_wrong_case": lambda: _bearer(_signed(_claims(role="Admin"))),
    "owner_without_account_id": lambda: _bearer(_signed(_claims(role="owner"))),
    "viewer_without_account_id": lambda: _bearer(_signed(_claims(role="viewer"))),
    "owner_with_empty_account_id": lambda: _bearer(_signed(_claims(role="owner", account_id=""))),
    "tampered_payload": _tampered,
    # PyJWT (>= 2.10) refuses a token issued in the future; nbf in the future is refused the same way.
    "iat_in_future": lambda: _bearer(_signed(_claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200))),
    "nbf_in_future": lambda: _bearer(_signed(_claims(nbf=int(time.time()) + 3600))),
    # Just past the clock-skew leeway.
    "expired_beyond_leeway": lambda: _bearer(_signed(_claims(exp=int(time.time()) - LEEWAY_SECONDS - 1))),
    # Lifetimes beyond ADMIN_JWT_MAX_TTL_SECONDS (30 days by default): a leaked token must expire.
    "lives_10_to_the_30_seconds": lambda: _bearer(_signed(_claims(exp=int(time.time()) + 10**30))),
    "lives_a_day_past_the_cap": lambda: _bearer(
        _signed(_claims(exp=int(time.time()) + DEFAULT_MAX_TTL_SECONDS + 86400))
    ),
    "issued_long_ago_to_live_long": lambda: _bearer(_signed(_claims(iat=int(time.time()) - 10**9))),
    # Header parameters naming another key source: a token we minted never carries them (RFC 8725 §3.10).
    "jku_header": lambda: _bearer(jwt.encode(_claims(), JWT_SECRET, headers={"jku": "https://evil.example/k"})),
    "jwk_header": lambda: _bearer(jwt.encode(_claims(), JWT_SECRET, headers={"jwk": {"kty": "oct", "k": "eA"}})),
    "x5u_header": lambda: _bearer(jwt.encode(_claims(), JWT_SECRET, headers={"x5u": "https://evil.example/c"})),
}


def _assert_envelope(body: Any, code: str) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def _plans(client: TestClient) -> list[dict[str, Any]]:
    return (await expect(await client.get("/api/admin/plans", headers=auth()), 200))["plans"]


@pytest.mark.parametrize("case", list(BAD_AUTH))
async def test_bad_token_is_401_and_handler_never_runs(client: TestClient, case: str) -> None:
    headers = BAD_AUTH[case]()

    response = await client.post("/api/admin/plans", json=PLAN_BODY, headers=headers)

    _assert_envelope(await expect(response, 401), "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await _plans(client) == []  # the create handler did not run


@pytest.mark.parametrize("case", ["no_header", "alg_none", "hs256_wrong_key", "expired", "tampered_payload"])
async def test_bad_token_cannot_read_either(client: TestClient, case: str) -> None:
    tenant = await provision(client)
    response = await client.get(f"/api/admin/accounts/{tenant.account_id}", headers=BAD_AUTH[case]())
    body = await expect(response, 401)
    _assert_envelope(body, "unauthorized")
    assert tenant.account_id not in json.dumps(body)


async def test_valid_admin_token_is_accepted(client: TestClient) -> None:
    """The positive control for the matrix above: the same request with a good token does create the plan."""
    await expect(await client.post("/api/admin/plans", json=PLAN_BODY, headers=auth()), 201)
    assert [p["name"] for p in await _plans(client)] == ["gold"]


async def test_hand_built_token_with_every_required_claim_is_accepted(client: TestClient) -> None:
    """Any standard JWT library can mint a token from the contract's claims alone."""
    response = await client.get("/api/admin/plans", headers=_bearer(_signed(_claims())))
    assert (await expect(response, 200)) == {"plans": []}


async def test_admin_api_without_secret_is_503_not_configured(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(dataclasses.replace(settings, admin_jwt_secret=None))
    for headers in (auth(), {}):
        body = await expect(await client.get("/api/admin/plans", headers=headers), 503)
        _assert_envelope(body, "not_configured")
        assert "ADMIN_JWT_SECRET" in body["error"]["message"]
    body = await expect(await client.post("/api/admin/plans", json=PLAN_BODY, headers=auth()), 503)
    _assert_envelope(body, "not_configured")


async def test_the_lifetime_cap_is_the_operators_setting(make_client: MakeClient, settings: Settings) -> None:
    """A 90-day token: refused under the default cap, accepted where the operator raised it; the cap is exp - iat."""
    now = int(time.time())
    ninety_days = _bearer(_signed(_claims(iat=now, exp=now + 90 * 86400)))
    default = await make_client(settings)
    body = await expect(await default.get("/api/admin/plans", headers=ninety_days), 401)
    _assert_envelope(body, "unauthorized")
    assert "longer than" in body["error"]["message"]
    raised = await make_client(dataclasses.replace(settings, admin_jwt_max_ttl_seconds=100 * 86400))
    await expect(await raised.get("/api/admin/plans", headers=ninety_days), 200)


def test_installed_pyjwt_is_at_least_2_13() -> None:
    assert Version(version("PyJWT")) >= Version("2.13.0")


def _cli_token(*args: str) -> str:
    out = io.StringIO()
    assert cli_main(["token", *args], {"ADMIN_JWT_SECRET": JWT_SECRET}, out=out) == 0
    return out.getvalue().strip()


async def test_cli_admin_token_is_accepted(client: TestClient) -> None:
    minted = _cli_token("--role", "admin", "--sub", "ops", "--ttl", "3600")
    await expect(await client.post("/api/admin/plans", json=PLAN_BODY, headers=_bearer(minted)), 201)
    assert [p["name"] for p in await _plans(client)] == ["gold"]


async def test_cli_owner_token_is_scoped_to_its_account(client: TestClient) -> None:
    mine, other = await provision(client, name="Mine"), await provision(client, name="Other")
    minted = _bearer(_cli_token("--role", "owner", "--sub", "boss@mine.example", "--account-id", mine.account_id))
    assert (await expect(await client.get(f"/api/admin/accounts/{mine.account_id}", headers=minted), 200))[
        "name"
    ] == "Mine"
    await expect(await client.get(f"/api/admin/accounts/{other.account_id}", headers=minted), 404)


def test_cli_token_without_secret_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert cli_main(["token", "--role", "admin", "--sub", "ops"], {}, out=out) == 2
    assert out.getvalue() == ""
    assert "ADMIN_JWT_SECRET" in capsys.readouterr().err


async def test_a_token_just_expired_within_the_clock_skew_leeway_is_accepted(client: TestClient) -> None:
    """A minting host a few seconds ahead must not lock operators out."""
    now = int(time.time())
    headers = _bearer(_signed(_claims(iat=now - 600, exp=now - 2)))
    await expect(await client.get("/api/admin/plans", headers=headers), 200)
