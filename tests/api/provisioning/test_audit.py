"""The audit trail: every mutation of the JWT APIs, done, refused or failed, with who, what and which account; read
by the operator only; never a secret in it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.clocks import SteppingClock
from tests.support.harness import auth, expect, provision, relay

TRAIL = "/api/admin/audit"
FEED = "/api/dashboard/activity"


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> TestClient:
    """Every timestamp distinct, so "newest first" is never decided by a tie within one millisecond."""
    return await make_client(settings, clock=SteppingClock())


async def trail(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    return (await expect(await client.get(f"{TRAIL}{query}", headers=auth()), 200))["entries"]


async def test_operator_mutations_are_recorded_with_who_what_and_the_account(client: TestClient) -> None:
    tenant = await provision(client)
    response = await client.patch(
        f"/api/admin/bots/{tenant.bot_id}", json={"persona": "Terse."}, headers={**auth(), "X-Request-Id": "chg-42"}
    )
    await expect(response, 200)

    entries = await trail(client)

    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("PATCH", "/api/admin/bots/{bot_id}", 200),
        ("POST", "/api/admin/accounts/{account_id}/api-keys", 201),
        ("POST", "/api/admin/accounts/{account_id}/bots", 201),
        ("POST", "/api/admin/accounts", 201),
        ("POST", "/api/admin/plans", 201),
    ]
    patch, key, bot, account, plan = entries
    assert (patch["actor"], patch["actor_role"], patch["action"]) == ("tester", "admin", "update_bot")
    assert (patch["target_type"], patch["target_id"], patch["account_id"]) == ("bot", tenant.bot_id, tenant.account_id)
    assert patch["request_id"] == "chg-42" and patch["detail"] == {"fields": ["persona"]}
    assert (bot["target_type"], bot["target_id"]) == ("bot", tenant.bot_id)  # the created object
    assert (account["target_type"], account["target_id"], account["account_id"]) == (
        "account",
        tenant.account_id,
        tenant.account_id,
    )
    assert key["target_type"] == "api_key" and key["account_id"] == tenant.account_id
    assert (plan["target_id"], plan["account_id"]) == (tenant.plan_id, None)  # platform-wide


async def test_secrets_sent_or_shown_never_reach_the_trail(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    secrets = {"access_token": "token-777000111", "app_secret": "shh-app-secret", "verify_token": "shh-verify"}
    body = {"platform": "messenger", "external_id": "777000111", **secrets}
    await expect(await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth()), 201)
    refused = {**body, "external_id": "777000112", "bogus": "x", "sk-live-0123456789abcdef0123456789": 1}
    await expect(await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=refused, headers=auth()), 400)

    entries = await trail(client)

    assert entries[1]["detail"] == {"fields": ["access_token", "app_secret", "external_id", "platform", "verify_token"]}
    assert entries[0]["status"] == 400 and entries[0]["detail"]["other_fields"] == 1
    stored = " ".join(str(tuple(row)) for row in database.rows(settings, "SELECT * FROM audit_log"))
    for secret in (*secrets.values(), tenant.api_key, "sk-live-0123456789abcdef"):
        assert secret not in stored


async def test_refusals_are_recorded_against_the_callers_own_account(client: TestClient) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    before = len(await trail(client))

    await expect(
        await client.patch(f"/api/admin/bots/{a.bot_id}", json={"name": "x"}, headers=auth("viewer", a.account_id)), 403
    )
    await expect(await client.delete(f"/api/admin/bots/{a.bot_id}", headers=auth("owner", b.account_id)), 404)
    await expect(await client.patch(f"/api/admin/bots/{a.bot_id}", json={"name": "x"}), 401)  # nobody to record
    await expect(await client.get(f"/api/admin/bots/{a.bot_id}", headers=auth("owner", a.account_id)), 200)  # a read

    entries = await trail(client)

    assert len(entries) == before + 2
    owner_b, viewer_a = entries[:2]
    assert (viewer_a["actor_role"], viewer_a["status"], viewer_a["account_id"]) == ("viewer", 403, a.account_id)
    # B's owner probing A's bot: logged in B's name, and nothing of it shows in A's records.
    assert (owner_b["actor_role"], owner_b["status"], owner_b["account_id"]) == ("owner", 404, b.account_id)
    assert owner_b["target_id"] == a.bot_id
    assert [e["id"] for e in await trail(client, f"?account_id={a.account_id}") if e["actor_role"] == "owner"] == []


async def test_a_mutation_answered_5xx_is_audited_as_an_error(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, secrets_key=None))
    tenant = await provision(client)
    body = {"platform": "whatsapp", "external_id": "106540352242922", "access_token": "token-secret-value"}

    answer = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())

    assert (await expect(answer, 503))["error"]["code"] == "not_configured"
    entries = (await expect(await client.get(TRAIL, headers=auth()), 200))["entries"]
    [failed] = [e for e in entries if e["action"] == "connect_channel"]
    assert (failed["status"], failed["account_id"], failed["target_id"]) == (503, tenant.account_id, tenant.bot_id)
    assert failed["detail"] == {"outcome": "error", "fields": ["access_token", "external_id", "platform"]}
    assert "token-secret-value" not in str(entries)
    # The feed shows what happened to the account; an attempt that failed stays in the trail only.
    feed = (await expect(await client.get(f"{FEED}?kind=admin_action", headers=auth()), 200))["activity"]
    assert all(a["detail"]["path"] != "/api/admin/bots/{bot_id}/channels" for a in feed)


async def test_conversation_actions_are_audited_too(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hello"), 200)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]

    await expect(await client.post(f"/api/conversations/{contact['id']}/pause", headers=owner), 409)
    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)

    erase, pause = (await trail(client, f"?account_id={tenant.account_id}"))[:2]
    assert (pause["path"], pause["status"], pause["target_type"], pause["target_id"]) == (
        "/api/conversations/{contact_id}/pause",
        409,
        "contact",
        contact["id"],
    )
    assert (erase["action"], erase["status"], erase["account_id"]) == ("erase_conversation", 200, tenant.account_id)


async def test_only_the_operator_reads_the_trail_a_page_at_a_time(client: TestClient) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    for role in ("owner", "viewer"):
        body = await expect(await client.get(TRAIL, headers=auth(role, a.account_id)), 403)
        assert body["error"]["code"] == "forbidden"
        await expect(await client.get(f"{TRAIL}?account_id={a.account_id}", headers=auth(role, a.account_id)), 403)
        # Another account's id is a 404 first, as everywhere.
        await expect(await client.get(f"{TRAIL}?account_id={b.account_id}", headers=auth(role, a.account_id)), 404)

    everything = await trail(client)
    paged: list[dict[str, Any]] = []
    query = "?limit=3"
    while True:
        body = await expect(await client.get(f"{TRAIL}{query}", headers=auth()), 200)
        paged += body["entries"]
        if body["next_cursor"] is None:
            break
        query = f"?limit=3&cursor={body['next_cursor']}"

    assert [e["id"] for e in paged] == [e["id"] for e in everything] and len(everything) == 8
    only_b = await trail(client, f"?account_id={b.account_id}")
    assert len(only_b) == 3 and {e["account_id"] for e in only_b} == {b.account_id}
    await expect(await client.get(f"{TRAIL}?account_id=acc_nowhere", headers=auth()), 404)
    await expect(await client.get(f"{TRAIL}?cursor=bm9wZQ", headers=auth()), 400)
    await expect(await client.get(f"{TRAIL}?limit=201", headers=auth()), 400)
