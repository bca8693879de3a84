"""Accounts through the admin API: created on a plan, shown with their quota, renamed, moved, locked and unlocked."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.admin_api import ADMIN, PLAN, expect_error, get, patch, post
from tests.support.harness import auth, expect, provision, relay


async def test_account_with_unknown_plan_is_404_and_not_created(client: TestClient) -> None:
    await expect_error(await post(client, "/accounts", {"name": "Ghost", "plan_id": "pln_00000000000000000000"}), 404)
    assert (await get(client, "/accounts"))["accounts"] == []


async def test_account_create_and_quota_block(client: TestClient) -> None:
    plan = await expect(await post(client, "/plans", PLAN), 201)
    account = await expect(
        await post(client, "/accounts", {"name": "Café Luna", "plan_id": plan["id"], "email": "owner@luna.example"}),
        201,
    )
    assert (account["name"], account["plan_id"], account["email"], account["locked"]) == (
        "Café Luna",
        plan["id"],
        "owner@luna.example",
        False,
    )
    shown = await get(client, f"/accounts/{account['id']}")
    quota = shown.pop("quota")
    assert shown == account
    # The allowance is the monthly tokens plus the plan's 10 % overage band; nothing used yet.
    assert quota["limit_tokens"] == 55_000
    assert quota["used_tokens"] == 0
    assert quota["remaining_tokens"] == 55_000
    assert quota["credit_balance_tokens"] == 0
    assert quota["period_end"].endswith("T00:00:00Z")


async def test_account_patch_renames_and_moves_plan(client: TestClient) -> None:
    tenant = await provision(client)
    pro = await expect(await post(client, "/plans", {**PLAN, "name": "pro"}), 201)
    path = f"/accounts/{tenant.account_id}"
    await expect_error(await patch(client, path, {"plan_id": "pln_00000000000000000000"}), 404)
    updated = await expect(await patch(client, path, {"name": "Acme GmbH", "plan_id": pro["id"]}), 200)
    assert (updated["name"], updated["plan_id"]) == ("Acme GmbH", pro["id"])
    assert (await get(client, path))["quota"]["limit_tokens"] == 55_000


async def test_locked_account_cannot_relay_until_unlocked(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "before"), 200)
    lock = f"{ADMIN}/users/{tenant.account_id}/lock"

    locked = await expect(await client.put(lock, json={"locked": True}, headers=auth()), 200)
    assert locked["locked"] is True
    assert (await get(client, f"/accounts/{tenant.account_id}"))["locked"] is True
    await expect_error(await client.put(lock, json={"locked": "yes"}, headers=auth()), 400)

    error = await expect(await relay(client, tenant, "while locked"), 403)
    assert error["error"]["code"] == "account_locked"
    assert len(fake_openai.calls) == 1  # nothing went to the model for the locked account

    unlocked = await expect(await client.put(lock, json={"locked": False}, headers=auth()), 200)
    assert unlocked["locked"] is False
    assert (await expect(await relay(client, tenant, "after"), 200))["reply"] == "You said: after"
