"""The admin API as the provisioning tests call it: paths under /api/admin with the operator's token, a valid plan,
and the check that a refusal carries the contract's error envelope with the code of its status."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.harness import auth, expect

ADMIN = "/api/admin"

PLAN = {
    "name": "starter",
    "monthly_token_limit": 50_000,
    "models": ["gpt-4o-mini", "gpt-4.1"],
    "default_model": "gpt-4o-mini",
    "overage_percent": 10,
    "messages_per_minute": 30,
}

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
}


async def expect_error(response: Any, status: int) -> dict[str, Any]:
    """The answer has `status` and the contract's error envelope with the matching code."""
    body = await expect(response, status)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == CODES[status], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def get(client: TestClient, path: str) -> Any:
    return await expect(await client.get(ADMIN + path, headers=auth()), 200)


async def post(client: TestClient, path: str, body: Any) -> Any:
    return await client.post(ADMIN + path, json=body, headers=auth())


async def patch(client: TestClient, path: str, body: Any) -> Any:
    return await client.patch(ADMIN + path, json=body, headers=auth())
