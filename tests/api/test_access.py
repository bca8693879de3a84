"""Admin API authorization: the cases the document-driven matrix (tests/api/test_authz_matrix.py) does not spell out.

That matrix covers every operation × role × {own, another account's, random} id and injected body fields; the
tests here pin particular scenarios: list scoping, a key id of another account under one's own path, an owner
changing its own plan, the relay refusing another tenant's bot, and another account's id staying a 404 when the
rest of the query is wrong too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay

ROLES = ("admin", "owner", "viewer")
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant
    key_ids: dict[str, str]  # account id -> id of the API key provision() issued
    channel_ids: dict[str, str]  # account id -> id of the channel connected to its bot

    def headers(self, role: str) -> dict[str, str]:
        return auth(role, None if role == "admin" else self.a.account_id)


async def _world(client: TestClient) -> World:
    a, b = await provision(client, name="Alpha"), await provision(client, name="Bravo")
    key_ids, channel_ids = {}, {}
    for page_id, tenant in (("700000001", a), ("700000002", b)):
        keys = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}/api-keys", headers=auth()), 200)
        key_ids[tenant.account_id] = keys["api_keys"][0]["id"]
        channel_ids[tenant.account_id] = (await connect_channel(client, tenant, "messenger", page_id))["id"]
    return World(a, b, key_ids, channel_ids)


def _assert_envelope(body: Any, status: int) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == CODES[status], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_lists_are_scoped_to_the_callers_account(client: TestClient) -> None:
    world = await _world(client)
    for role in ("owner", "viewer"):
        accounts = await expect(await client.get("/api/admin/accounts", headers=world.headers(role)), 200)
        assert [a["id"] for a in accounts["accounts"]] == [world.a.account_id]
    accounts = await expect(await client.get("/api/admin/accounts", headers=auth()), 200)
    assert {a["id"] for a in accounts["accounts"]} == {world.a.account_id, world.b.account_id}
    # The plan catalogue is the same for everyone.
    for role in ROLES:
        plans = await expect(await client.get("/api/admin/plans", headers=world.headers(role)), 200)
        assert {p["id"] for p in plans["plans"]} == {world.a.plan_id, world.b.plan_id}


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_key_of_another_account_cannot_be_revoked_through_own_path(
    client: TestClient, fake_openai: FakeOpenAI, role: str
) -> None:
    world = await _world(client)
    path = f"/api/admin/accounts/{world.a.account_id}/api-keys/{world.key_ids[world.b.account_id]}"
    _assert_envelope(await expect(await client.delete(path, headers=world.headers(role)), 404), 404)
    await expect(await relay(client, world.b, "still working?"), 200)


async def test_owner_cannot_change_own_plan(client: TestClient) -> None:
    world = await _world(client)
    path = f"/api/admin/accounts/{world.a.account_id}"
    body = await expect(
        await client.patch(path, json={"plan_id": world.b.plan_id}, headers=world.headers("owner")), 403
    )
    _assert_envelope(body, 403)
    assert (await expect(await client.get(path, headers=auth()), 200))["plan_id"] == world.a.plan_id


async def test_relay_cannot_reach_another_tenants_bot(client: TestClient, fake_openai: FakeOpenAI) -> None:
    world = await _world(client)
    body = await expect(await relay(client, world.a, "hello", bot_id=world.b.bot_id), 404)
    _assert_envelope(body, 404)
    assert fake_openai.calls == []  # B's persona never reached the model on A's behalf


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("/api/dashboard/metrics", {"from": "bogus"}),
        ("/api/dashboard/usage", {"top": "999"}),
        ("/api/dashboard/bots", {"to": "never"}),
        ("/api/dashboard/activity", {"limit": "0"}),
        ("/api/conversations", {"platform": "fax"}),
    ],
)
async def test_another_accounts_id_is_a_404_whatever_else_the_query_gets_wrong(
    client: TestClient, path: str, bad: dict[str, str]
) -> None:
    """Was 400 for a while: a 400 for another account but 404 for a made-up one would tell them apart."""
    mine, theirs = await provision(client, name="Mine"), await provision(client, name="Theirs")
    for role in ("owner", "viewer"):
        for account in (theirs.account_id, "acc_" + "9" * 70):
            params = {"account_id": account, **bad}
            response = await client.get(path, params=params, headers=auth(role, mine.account_id))
            assert (await expect(response, 404))["error"]["code"] == "not_found", (path, role, account)
        response = await client.get(path, params=bad, headers=auth(role, mine.account_id))
        assert (await expect(response, 400))["error"]["code"] == "bad_request"  # their own account: the query


async def test_the_audit_trail_is_the_operators_whatever_the_query(client: TestClient) -> None:
    tenant = await provision(client)
    for role in ("owner", "viewer"):
        response = await client.get("/api/admin/audit", params={"limit": "0"}, headers=auth(role, tenant.account_id))
        assert (await expect(response, 403))["error"]["code"] == "forbidden"
    assert await expect(await client.get("/api/admin/audit", params={"limit": "0"}, headers=auth()), 400)
