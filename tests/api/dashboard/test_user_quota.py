"""GET /api/user/quota: the caller's allowance (monthly tokens + overage band + credits), used, held, remaining."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.harness import auth, expect, provision, relay


async def quota(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return await expect(await client.get("/api/user/quota", params=params, headers=headers), 200)


async def test_owner_and_viewer_see_their_allowance_usage_and_credits(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client, plan={"monthly_token_limit": 100_000, "overage_percent": 10})
    grant = {"tokens": 5_000, "kind": "grant"}
    await expect(await client.post(f"/api/admin/accounts/{tenant.account_id}/credits", json=grant, headers=auth()), 201)
    await expect(await relay(client, tenant, "How much is a cappuccino?"), 200)
    used = fake_openai.calls[0].usage["total_tokens"]

    body = await quota(client, auth("owner", tenant.account_id))

    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    )
    assert body == {
        "account_id": tenant.account_id,
        "limit_tokens": 115_000,  # 100,000 monthly + 10,000 overage band + 5,000 credits
        "monthly_tokens": 100_000,
        "overage_band_tokens": 10_000,
        "credit_tokens": 5_000,
        "credit_balance_tokens": 5_000,  # the monthly allowance is not used up: no credit drawn
        "used_tokens": used,
        "reserved_tokens": 0,
        "remaining_tokens": 115_000 - used,
        "period_start": month.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period_end": following.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert await quota(client, auth("viewer", tenant.account_id)) == body
    assert await quota(client, auth("owner", tenant.account_id), account_id=tenant.account_id) == body
    assert await quota(client, auth(), account_id=tenant.account_id) == body


async def test_admin_must_name_the_account(client: TestClient) -> None:
    body = await expect(await client.get("/api/user/quota", headers=auth()), 400)
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["details"]["field"] == "account_id"
    missing = await client.get("/api/user/quota", params={"account_id": "acc_missing"}, headers=auth())
    assert (await expect(missing, 404))["error"]["code"] == "not_found"


async def test_another_accounts_quota_is_404_and_a_token_is_required(client: TestClient) -> None:
    a = await provision(client, name="Alpha")
    b = await provision(client, name="Beta")
    for role in ("owner", "viewer"):
        response = await client.get(
            "/api/user/quota", params={"account_id": b.account_id}, headers=auth(role, a.account_id)
        )
        assert (await expect(response, 404))["error"]["code"] == "not_found"
    assert (await expect(await client.get("/api/user/quota"), 401))["error"]["code"] == "unauthorized"
