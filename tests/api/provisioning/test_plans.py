"""Plans through the admin API: create, read, update and delete, defaults, validation, and a plan still in use."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.admin_api import ADMIN, PLAN, expect_error, get, patch, post
from tests.support.harness import auth, expect, provision


async def test_plan_crud(client: TestClient) -> None:
    created = await expect(await post(client, "/plans", PLAN), 201)
    assert isinstance(created["id"], str) and created["id"]
    assert {k: created[k] for k in PLAN} == PLAN
    assert await get(client, f"/plans/{created['id']}") == created
    assert (await get(client, "/plans"))["plans"] == [created]

    # Partial update: only the named field moves.
    updated = await expect(await patch(client, f"/plans/{created['id']}", {"monthly_token_limit": 80_000}), 200)
    assert updated["monthly_token_limit"] == 80_000
    assert {k: updated[k] for k in PLAN if k != "monthly_token_limit"} == {
        k: v for k, v in PLAN.items() if k != "monthly_token_limit"
    }
    assert await get(client, f"/plans/{created['id']}") == updated

    await expect(await client.delete(f"{ADMIN}/plans/{created['id']}", headers=auth()), 204)
    await expect_error(await client.get(f"{ADMIN}/plans/{created['id']}", headers=auth()), 404)
    await expect_error(await client.delete(f"{ADMIN}/plans/{created['id']}", headers=auth()), 404)
    assert (await get(client, "/plans"))["plans"] == []


async def test_plan_optional_fields_have_defaults(client: TestClient) -> None:
    body = {k: PLAN[k] for k in ("name", "monthly_token_limit", "models", "default_model")}
    created = await expect(await post(client, "/plans", body), 201)
    assert created["overage_percent"] == 0
    assert created["messages_per_minute"] is None


async def test_duplicate_plan_name_is_409(client: TestClient) -> None:
    first = await expect(await post(client, "/plans", PLAN), 201)
    await expect_error(await post(client, "/plans", {**PLAN, "monthly_token_limit": 1}), 409)
    other = await expect(await post(client, "/plans", {**PLAN, "name": "pro"}), 201)
    # Renaming onto a taken name is the same conflict.
    await expect_error(await patch(client, f"/plans/{other['id']}", {"name": "starter"}), 409)
    assert {p["id"] for p in (await get(client, "/plans"))["plans"]} == {first["id"], other["id"]}
    assert (await get(client, f"/plans/{first['id']}"))["monthly_token_limit"] == PLAN["monthly_token_limit"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"default_model": "gpt-5"}, "default_model"),
        ({"models": []}, "models"),
        ({"models": ["gpt-4o-mini", 7]}, "models"),
        ({"monthly_token_limit": -1}, "monthly_token_limit"),
        ({"monthly_token_limit": "lots"}, "monthly_token_limit"),
        ({"overage_percent": 101}, "overage_percent"),
        ({"messages_per_minute": 0}, "messages_per_minute"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
    ],
)
async def test_invalid_plan_is_400_naming_the_field(client: TestClient, change: dict[str, Any], field: str) -> None:
    error = await expect_error(await post(client, "/plans", {**PLAN, **change}), 400)
    assert error["details"]["field"] == field
    assert (await get(client, "/plans"))["plans"] == []


async def test_plan_patch_keeps_default_model_within_models(client: TestClient) -> None:
    plan = await expect(await post(client, "/plans", PLAN), 201)
    await expect_error(await patch(client, f"/plans/{plan['id']}", {"default_model": "gpt-5"}), 400)
    await expect_error(await patch(client, f"/plans/{plan['id']}", {"models": ["gpt-4.1"]}), 400)  # drops the default
    await expect_error(await patch(client, f"/plans/{plan['id']}", {}), 400)  # nothing to update
    assert await get(client, f"/plans/{plan['id']}") == plan


async def test_plan_in_use_cannot_be_deleted(client: TestClient) -> None:
    tenant = await provision(client)
    error = await expect_error(await client.delete(f"{ADMIN}/plans/{tenant.plan_id}", headers=auth()), 409)
    assert "plan" in error["message"]
    assert (await get(client, f"/plans/{tenant.plan_id}"))["id"] == tenant.plan_id
