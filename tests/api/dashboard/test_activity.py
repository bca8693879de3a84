"""The dashboard activity feed: each kind written where it happens, read newest first one cursor page at a time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import NOW_MS, PAGE_ID, PSID, deliver, fb_event, fb_text, settled, until
from tests.support.clocks import SteppingClock
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay

FEED = "/api/dashboard/activity"
TRAIL = "/api/admin/audit"


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> TestClient:
    """Every timestamp distinct, so "newest first" is never decided by a tie within one millisecond."""
    return await make_client(settings, clock=SteppingClock())


async def feed(client: TestClient, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    return (await expect(await client.get(f"{FEED}{query}", headers=headers), 200))["activity"]


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings, clock=SteppingClock())
    tenant = await provision(client, bot={"handover_pause_minutes": 20})
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


async def test_each_new_conversation_shows_once(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    other = await provision(client, name="Other")
    for user in ("ann", "ann", "ben"):
        await expect(await relay(client, tenant, "hi", user_id=user), 200)
    await expect(await relay(client, other, "hi", user_id="zed"), 200)
    owner = auth("owner", tenant.account_id)

    started = await feed(client, owner, "?kind=conversation_started")

    contacts = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    assert sorted(e["contact_id"] for e in started) == sorted(c["id"] for c in contacts)
    assert len(started) == 2
    assert all(e["summary"] == "New conversation on relay API" and e["bot_id"] == tenant.bot_id for e in started)
    assert not any("ann" in e["summary"] or "ben" in e["summary"] for e in started)  # no personal data


async def test_quota_warnings_at_80_percent_and_when_used_up_once_each(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(
        client, plan={"monthly_token_limit": 1000}, bot={"max_reply_tokens": 20, "memory_tokens": 64}
    )
    statuses = []
    for n in range(60):
        response = await relay(client, tenant, f"question {n}")
        statuses.append(response.status)
        if response.status == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) > 5
    await expect(await relay(client, tenant, "and again?"), 429)  # refused twice: still one "used up" warning
    owner = auth("viewer", tenant.account_id)

    warnings = await feed(client, owner, "?kind=quota_warning")

    assert [w["detail"]["threshold_percent"] for w in warnings] == [100, 80]
    assert "used up" in warnings[0]["summary"] and warnings[1]["summary"].startswith("80%")
    assert warnings[1]["detail"]["used_tokens"] >= 800 and warnings[1]["detail"]["limit_tokens"] == 1000


async def test_a_channel_that_needs_reauthorisation_shows_once(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    fake_graph.fail_text_sends_with(GraphFault(190, 463), GraphFault(190, 463))
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await deliver(client, "/webhooks/messenger", fb_text("m_2", "hello?", sender="2900000000000002", ts=NOW_MS))
    await until(lambda: database.rows(settings, "SELECT status FROM channels")[0]["status"] == "needs_reauth")
    await asyncio.sleep(0.3)  # the other conversation's send fails too, or waits: either way no second row

    errors = await feed(client, auth("owner", tenant.account_id), "?kind=channel_error")

    [channel] = (await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}/channels", headers=auth()), 200))[
        "channels"
    ]
    assert [(e["channel_id"], e["detail"]["status"]) for e in errors] == [(channel["id"], "needs_reauth")]
    assert errors[0]["summary"] == f"Messenger channel {PAGE_ID} needs re-authorisation"


async def test_a_human_answering_from_the_inbox_is_one_takeover(live: Any, fake_openai: FakeOpenAI) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await settled(settings)
    for n in range(2):  # a person types two messages: one takeover, its pause extended
        human = {"message": {"mid": f"m_human_{n}", "is_echo": True, "app_id": 263902037430900, "text": "Anna here"}}
        await deliver(client, "/webhooks/messenger", fb_event(human, sender=PAGE_ID, recipient=PSID, ts=NOW_MS + n))
        await settled(settings)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]

    takeovers = await feed(client, owner, "?kind=human_takeover")

    assert [(t["contact_id"], t["detail"]["source"], t["detail"]["paused_minutes"]) for t in takeovers] == [
        (contact["id"], "echo", 20)
    ]
    assert contact["paused"] is True
    # Pausing a paused conversation is no new takeover; after a resume, a pause through the API is one.
    path = f"/api/conversations/{contact['id']}"
    await expect(await client.post(f"{path}/pause", headers=owner), 200)
    assert len(await feed(client, owner, "?kind=human_takeover")) == 1
    await expect(await client.post(f"{path}/resume", headers=owner), 200)
    await expect(await client.post(f"{path}/pause", json={"minutes": 10}, headers=owner), 200)
    latest = (await feed(client, owner, "?kind=human_takeover"))[0]
    assert (latest["detail"]["source"], latest["detail"]["paused_minutes"]) == ("api", 10)


async def test_operator_actions_show_in_the_accounts_feed(client: TestClient) -> None:
    tenant = await provision(client)
    other = await provision(client, name="Other")
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"persona": "New."}, headers=auth()), 200)
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"bogus": 1}, headers=auth()), 400)

    actions = await feed(client, auth("owner", tenant.account_id), "?kind=admin_action")

    # provision() made the account, its bot and API key; then the bot was updated. The refused PATCH is not news.
    assert [a["detail"]["path"] for a in actions] == [
        "/api/admin/bots/{bot_id}",
        "/api/admin/accounts/{account_id}/api-keys",
        "/api/admin/accounts/{account_id}/bots",
        "/api/admin/accounts",
    ]
    assert actions[0]["summary"] == f"The operator: update bot {tenant.bot_id}"
    assert actions[3]["summary"] == f"The operator: create account {tenant.account_id}"
    assert actions[0]["bot_id"] == tenant.bot_id
    assert all(a["account_id"] == tenant.account_id for a in actions)
    others = await feed(client, auth("owner", other.account_id), "?kind=admin_action")
    assert all(a["account_id"] == other.account_id for a in others)


async def test_the_feed_does_not_name_the_operator(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"persona": "New."}, headers=auth()), 200)
    await expect(await relay(client, tenant, "hi", user_id="to-erase"), 200)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)

    for role in ("owner", "viewer"):
        actions = (
            await expect(await client.get(f"{FEED}?kind=admin_action", headers=auth(role, tenant.account_id)), 200)
        )["activity"]
        by_path = {a["detail"]["path"]: a for a in actions}
        operator = by_path["/api/admin/bots/{bot_id}"]
        assert "actor" not in operator["detail"] and operator["detail"]["actor_role"] == "admin"
        assert operator["summary"] == f"The operator: update bot {tenant.bot_id}"
        # An owner's own action still says which of the account's people did it.
        assert by_path["/api/conversations/{contact_id}"]["detail"]["actor"] == "tester"
    # The audit trail, for the operator only, keeps who it was.
    entries = (await expect(await client.get(TRAIL, headers=auth()), 200))["entries"]
    patch = next(e for e in entries if e["action"] == "update_bot")
    assert (patch["actor"], patch["actor_role"]) == ("tester", "admin")


async def test_the_feed_pages_newest_first_and_is_scoped(client: TestClient, fake_openai: FakeOpenAI) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    for n in range(3):
        await expect(await relay(client, a, "hi", user_id=f"a-{n}"), 200)
    await expect(await relay(client, b, "hi", user_id="b-0"), 200)
    viewer = auth("viewer", a.account_id)
    everything = await feed(client, viewer)

    paged: list[dict[str, Any]] = []
    query = "?limit=2"
    while True:
        body = await expect(await client.get(f"{FEED}{query}", headers=viewer), 200)
        paged += body["activity"]
        if body["next_cursor"] is None:
            break
        query = f"?limit=2&cursor={body['next_cursor']}"

    assert [e["id"] for e in paged] == [e["id"] for e in everything]
    assert len(everything) == 6  # three conversations, and the account, bot and key provision() made
    stamps = [e["created_at"] for e in everything]
    assert stamps == sorted(stamps, reverse=True)
    assert {e["account_id"] for e in everything} == {a.account_id}
    assert {e["account_id"] for e in await feed(client, auth(), f"?account_id={b.account_id}")} == {b.account_id}
    assert {e["account_id"] for e in await feed(client, auth())} == {a.account_id, b.account_id}
    await expect(await client.get(f"{FEED}?account_id={b.account_id}", headers=viewer), 404)
    await expect(await client.get(f"{FEED}?kind=everything", headers=viewer), 400)
    await expect(await client.get(f"{FEED}?cursor=%%%", headers=viewer), 400)
    await expect(await client.get(FEED), 401)


async def test_a_limit_of_thousands_of_digits_is_a_400_not_a_500(client: TestClient) -> None:
    """Regression: int() refuses strings past 4,300 digits with ValueError, which answered 500."""
    for paged in ("/api/dashboard/activity", "/api/conversations", "/api/admin/audit"):
        for limit in ("9" * 5000, "0", "201", "-1", "1e3"):
            response = await client.get(f"{paged}?limit={limit}", headers=auth())
            assert (await expect(response, 400))["error"]["details"]["field"] == "limit"
