"""GET /api/dashboard/bots: each live bot with its channels' health, last activity, message and cost totals."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.support.harness import auth, connect_channel, expect, provision, relay, signed
from tests.support.reporting_rows import insert, ms, usage_row

PAGE_ID = "1000001"


async def bots(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return await expect(await client.get("/api/dashboard/bots", params=params, headers=headers), 200)


def cost(usage: dict[str, int]) -> Decimal:
    """gpt-4o-mini: $0.15 per 1M input tokens, $0.60 per 1M output tokens."""
    return (usage["prompt_tokens"] * Decimal("0.15") + usage["completion_tokens"] * Decimal("0.60")) / 1_000_000


async def test_bots_with_channels_activity_and_totals(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, name="Acme")
    admin = auth()
    created = await client.post(
        f"/api/admin/accounts/{tenant.account_id}/bots", json={"name": "Second", "persona": "p"}, headers=admin
    )
    second = (await expect(created, 201))["id"]
    gone = await client.post(
        f"/api/admin/accounts/{tenant.account_id}/bots", json={"name": "Gone", "persona": "p"}, headers=admin
    )
    await expect(await client.delete(f"/api/admin/bots/{(await expect(gone, 201))['id']}", headers=admin), 204)
    channel = await connect_channel(client, tenant, "messenger", PAGE_ID)
    # A signed delivery marks the channel's last delivery (workers are off: it is only stored).
    now_ms = int(time.time() * 1000)
    raw, headers = signed(
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE_ID,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": "psid-9"},
                            "recipient": {"id": PAGE_ID},
                            "timestamp": now_ms,
                            "message": {"mid": "m_1", "text": "hi"},
                        }
                    ],
                }
            ],
        }
    )
    await expect(await client.post("/webhooks/messenger", data=raw, headers=headers), 200)
    for user in ("alice", "bob"):
        await expect(await relay(client, tenant, f"hello from {user}", user_id=user), 200)
    await expect(await relay(client, tenant, "shoes?", user_id="carol", bot_id=second), 200)
    first_usage, second_usage = fake_openai.calls[0].usage, fake_openai.calls[2].usage

    body = await bots(client, auth("viewer", tenant.account_id))

    assert body["account_id"] == tenant.account_id
    assert (body["from"], body["to"]) == (None, None)
    assert [b["name"] for b in body["bots"]] == ["Acme bot", "Second"]  # the deleted bot is gone
    acme, shoes = body["bots"]
    assert acme["id"] == tenant.bot_id
    assert (acme["contacts"], acme["messages"], acme["requests"]) == (2, 4, 2)
    assert Decimal(acme["cost_usd"]) == cost(first_usage) + cost(fake_openai.calls[1].usage)
    assert acme["cost_known"] is True
    assert acme["last_activity_at"] is not None
    assert (shoes["contacts"], shoes["messages"], shoes["requests"]) == (1, 2, 1)
    assert Decimal(shoes["cost_usd"]) == cost(second_usage)
    assert shoes["channels"] == []
    [health] = acme["channels"]
    assert {k: health[k] for k in ("id", "platform", "external_id", "status", "status_reason", "last_error")} == {
        "id": channel["id"],
        "platform": "messenger",
        "external_id": PAGE_ID,
        "status": "active",
        "status_reason": None,
        "last_error": None,
    }
    assert health["last_delivery_at"] is not None


async def test_a_range_narrows_the_totals(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    a, bot = tenant.account_id, tenant.bot_id
    insert(
        settings,
        "usage_records",
        [
            usage_row(a, bot, ms("2025-06-01T10:00:00"), cost=5000),
            usage_row(a, bot, ms("2025-06-02T10:00:00"), cost=None),
            usage_row(a, bot, ms("2025-07-01T10:00:00"), cost=7000),
        ],
    )
    headers = auth("owner", a)

    june = await bots(client, headers, **{"from": "2025-06-01", "to": "2025-07-01"})
    lifetime = await bots(client, headers)

    assert (june["from"], june["to"]) == ("2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z")
    [bot_june] = june["bots"]
    assert (bot_june["requests"], bot_june["cost_usd"], bot_june["cost_known"]) == (2, "0.000005", False)
    [bot_life] = lifetime["bots"]
    assert (bot_life["requests"], bot_life["cost_usd"]) == (3, "0.000012")


async def test_other_accounts_bots_stay_hidden(client: TestClient) -> None:
    a = await provision(client, name="Alpha")
    b = await provision(client, name="Beta")

    mine = await bots(client, auth("owner", a.account_id))
    everyone = await bots(client, auth())

    assert [x["id"] for x in mine["bots"]] == [a.bot_id]
    assert {x["id"] for x in everyone["bots"]} >= {a.bot_id, b.bot_id}
    response = await client.get(
        "/api/dashboard/bots", params={"account_id": b.account_id}, headers=auth("viewer", a.account_id)
    )
    assert (await expect(response, 404))["error"]["code"] == "not_found"
    bad = await client.get("/api/dashboard/bots", params={"from": "later"}, headers=auth("owner", a.account_id))
    assert (await expect(bad, 400))["error"]["details"]["field"] == "from"


async def test_contacts_mean_contacts_with_answered_turns_with_or_without_a_range(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    """Regression: without a range `contacts` counted every contact, with one only contacts with messages. A turn
    that fails upstream still creates its contact; neither figure counts it now."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hello", user_id="alice"), 200)
    fake_openai.script(Fault.insufficient_quota())  # bob's turn fails: a contact, a usage row, no messages
    assert (await relay(client, tenant, "hello?", user_id="bob")).status in (502, 503)
    headers = auth("owner", tenant.account_id)
    today = {"from": str(int(time.time() * 1000) - 3_600_000), "to": str(int(time.time() * 1000) + 3_600_000)}

    [lifetime] = (await bots(client, headers))["bots"]
    [ranged] = (await bots(client, headers, **today))["bots"]

    for report in (lifetime, ranged):
        assert (report["contacts"], report["messages"], report["requests"]) == (1, 2, 2)
