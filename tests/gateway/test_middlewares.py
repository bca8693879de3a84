"""The frame's middlewares (gateway/middlewares.py), on every route: a request id on each answer, and every error in
the contract's envelope, unknown routes and methods included. (A client hanging up mid-upload: gateway/test_serving.py,
which serves the app as production does.)
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.support.admin_api import ADMIN, PLAN, expect_error
from tests.support.harness import auth, expect


async def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    generated = (await client.get("/healthz")).headers["X-Request-Id"]
    assert generated.startswith("req_")
    kept = await client.get("/healthz", headers={"X-Request-Id": "upstream-42"})
    assert kept.headers["X-Request-Id"] == "upstream-42"
    forged = await client.get("/healthz", headers={"X-Request-Id": 'x" {"level":"critical"}'})
    assert forged.headers["X-Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/api/messages/relay", 405, "method_not_allowed"),
        ("GET", "/api/admin/plans/pln_missing", 404, "not_found"),
    ],
)
async def test_errors_use_the_envelope(client: TestClient, method: str, path: str, status: int, code: str) -> None:
    body = await expect(await client.request(method, path, headers=auth()), status)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_unknown_admin_route_and_method_use_the_envelope(client: TestClient) -> None:
    await expect_error(await client.get(f"{ADMIN}/tenants", headers=auth()), 404)
    response = await client.put(f"{ADMIN}/plans", json=PLAN, headers=auth())
    await expect_error(response, 405)
    assert "POST" in response.headers["Allow"]
