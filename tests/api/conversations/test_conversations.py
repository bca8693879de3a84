"""The conversations API: list, search, read, pause/resume (human takeover) and erase, through the real path."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.fakes.graph_server import FakeGraph
from tests.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.channel_traffic import NOW_MS, PAGE_ID, PSID, deliver, fb_text, settled
from tests.support.clocks import SteppingClock
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay


async def listing(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    return await expect(await client.get(f"/api/conversations{query}", headers=headers), 200)


@pytest.fixture
async def stepped(make_client: MakeClient, settings: Settings) -> TestClient:
    return await make_client(settings, clock=SteppingClock())


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    """Workers on (replies go to the fake Graph server of conftest), a Messenger Page connected to the bot."""
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client, bot={"handover_pause_minutes": 45})
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


async def test_conversations_are_listed_newest_first_with_their_last_message(
    stepped: TestClient, fake_openai: FakeOpenAI
) -> None:
    client = stepped
    tenant = await provision(client)
    for user in ("alice", "bob", "carol"):
        await expect(await relay(client, tenant, f"hello from {user}", user_id=user), 200)
    await expect(await relay(client, tenant, "alice again", user_id="alice"), 200)

    body = await listing(client, auth("owner", tenant.account_id))

    assert [c["external_id"] for c in body["conversations"]] == ["alice", "carol", "bob"]
    alice = body["conversations"][0]
    assert alice["message_count"] == 4 and alice["platform"] == "relay" and alice["bot_id"] == tenant.bot_id
    assert alice["last_message"]["role"] == "assistant"
    assert alice["last_message"]["preview"] == "You said: alice again"
    assert alice["paused"] is False and alice["paused_until"] is None
    assert body["next_cursor"] is None


async def test_pages_follow_the_cursor_without_gaps_or_repeats(stepped: TestClient, fake_openai: FakeOpenAI) -> None:
    client = stepped
    tenant = await provision(client)
    users = [f"user-{n}" for n in range(5)]
    for user in users:
        await expect(await relay(client, tenant, "hi", user_id=user), 200)
    headers = auth("viewer", tenant.account_id)
    seen: list[str] = []
    cursor = ""
    for _ in range(3):
        page = await listing(client, headers, f"?limit=2{cursor}")
        seen += [c["external_id"] for c in page["conversations"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == list(reversed(users))
    assert page["next_cursor"] is None and len(page["conversations"]) == 1


async def test_search_matches_the_customer_id_or_what_was_said(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "Where is my parcel?", user_id="crm-1001"), 200)
    await expect(await relay(client, tenant, "Opening hours?", user_id="crm-2002"), 200)
    headers = auth("owner", tenant.account_id)

    by_id = await listing(client, headers, "?q=1001")
    by_text = await listing(client, headers, "?q=PARCEL")
    literal = await listing(client, headers, "?q=%25")  # a LIKE wildcard is searched for, not obeyed

    assert [c["external_id"] for c in by_id["conversations"]] == ["crm-1001"]
    assert [c["external_id"] for c in by_text["conversations"]] == ["crm-1001"]
    assert literal["conversations"] == []


async def test_platform_and_bot_filters(live: Any, fake_openai: FakeOpenAI) -> None:
    client, tenant, settings = live
    await expect(await relay(client, tenant, "via the app", user_id="app-user"), 200)
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "via messenger", ts=NOW_MS))
    await settled(settings)
    other_bot = await expect(
        await client.post(
            f"/api/admin/accounts/{tenant.account_id}/bots", json={"name": "B2", "persona": "x"}, headers=auth()
        ),
        201,
    )
    await expect(await relay(client, tenant, "to bot 2", user_id="app-user", bot_id=other_bot["id"]), 200)
    headers = auth("owner", tenant.account_id)

    messenger = await listing(client, headers, "?platform=messenger")
    second_bot = await listing(client, headers, f"?bot_id={other_bot['id']}")

    assert [(c["platform"], c["external_id"]) for c in messenger["conversations"]] == [("messenger", PSID)]
    assert [c["bot_id"] for c in second_bot["conversations"]] == [other_bot["id"]]
    await expect(await client.get("/api/conversations?platform=telegram", headers=headers), 400)


async def test_each_role_sees_only_its_own_account(client: TestClient, fake_openai: FakeOpenAI) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    await expect(await relay(client, a, "hi", user_id="a-user"), 200)
    await expect(await relay(client, b, "hi", user_id="b-user"), 200)

    owner_a = await listing(client, auth("owner", a.account_id))
    everyone = await listing(client, auth())
    only_b = await listing(client, auth(), f"?account_id={b.account_id}")

    assert [c["external_id"] for c in owner_a["conversations"]] == ["a-user"]
    assert {c["external_id"] for c in everyone["conversations"]} == {"a-user", "b-user"}
    assert [c["external_id"] for c in only_b["conversations"]] == ["b-user"]
    # An owner naming another account gets the answer a missing account gets.
    await expect(
        await client.get(f"/api/conversations?account_id={b.account_id}", headers=auth("owner", a.account_id)), 404
    )
    [b_contact] = only_b["conversations"]
    for role in ("owner", "viewer"):
        response = await client.get(f"/api/conversations/{b_contact['id']}", headers=auth(role, a.account_id))
        assert (await expect(response, 404))["error"]["code"] == "not_found"
    await expect(await client.get(f"/api/conversations/{b_contact['id']}", headers=auth()), 200)
    await expect(await client.get("/api/conversations"), 401)


async def test_reading_a_conversation_pages_its_messages_oldest_first(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client)
    for text in ("one", "two", "three"):
        await expect(await relay(client, tenant, text), 200)
    headers = auth("viewer", tenant.account_id)
    [contact] = (await listing(client, headers))["conversations"]

    first = await expect(await client.get(f"/api/conversations/{contact['id']}?limit=4", headers=headers), 200)
    rest = await expect(
        await client.get(f"/api/conversations/{contact['id']}?limit=4&cursor={first['next_cursor']}", headers=headers),
        200,
    )

    contents = [(m["role"], m["content"]) for m in first["messages"] + rest["messages"]]
    assert contents == [
        ("user", "one"),
        ("assistant", "You said: one"),
        ("user", "two"),
        ("assistant", "You said: two"),
        ("user", "three"),
        ("assistant", "You said: three"),
    ]
    assert rest["next_cursor"] is None
    assert first["conversation"]["id"] == contact["id"] and first["pausable"] is False
    bad = await client.get(f"/api/conversations/{contact['id']}?cursor=not-a-cursor", headers=headers)
    assert (await expect(bad, 400))["error"]["code"] == "bad_request"
    await expect(await client.get(f"/api/conversations/{contact['id']}?limit=0", headers=headers), 400)


async def test_pausing_a_channel_conversation_stops_the_bot_until_resumed(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    [contact] = (await listing(client, owner))["conversations"]
    path = f"/api/conversations/{contact['id']}"

    paused = await expect(await client.post(f"{path}/pause", headers=owner), 200)
    await deliver(client, "/webhooks/messenger", fb_text("m_2", "anyone?", ts=NOW_MS + 1000))
    rows = await settled(settings)

    assert paused["paused"] is True
    # The bot's own handover pause (45 min) is the default length.
    minutes_left = (_epoch(paused["paused_until"]) - time.time()) / 60
    assert 43 < minutes_left <= 45
    assert {r["event_key"]: r["state"] for r in rows}["m_2"] == "skipped"
    assert len(fake_openai.calls) == 1
    listed = (await listing(client, owner))["conversations"][0]
    assert listed["paused"] is True and listed["paused_until"] == paused["paused_until"]

    resumed = await expect(await client.post(f"{path}/resume", headers=owner), 200)
    await deliver(client, "/webhooks/messenger", fb_text("m_3", "hello again", ts=NOW_MS + 2000))
    rows = await settled(settings)

    assert resumed["paused"] is False and resumed["paused_until"] is None
    assert {r["event_key"]: r["state"] for r in rows}["m_3"] == "done"
    assert fake_graph.texts_to(PSID)[-1] == "You said: hello again"


async def test_pause_length_is_the_callers_and_bounded(live: Any, fake_openai: FakeOpenAI) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    [contact] = (await listing(client, owner))["conversations"]
    path = f"/api/conversations/{contact['id']}/pause"

    paused = await expect(await client.post(path, json={"minutes": 5}, headers=owner), 200)

    assert 3 < (_epoch(paused["paused_until"]) - time.time()) / 60 <= 5
    await expect(await client.post(path, json={"minutes": 0}, headers=owner), 400)
    await expect(await client.post(path, json={"minutes": 7 * 24 * 60 + 1}, headers=owner), 400)
    await expect(await client.post(path, json={"minutes": 5, "account_id": "x"}, headers=owner), 400)


async def test_pause_is_for_owners_of_the_account(live: Any, fake_openai: FakeOpenAI) -> None:
    client, tenant, settings = live
    other = await provision(client, name="Other")
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await settled(settings)
    [contact] = (await listing(client, auth("owner", tenant.account_id)))["conversations"]
    path = f"/api/conversations/{contact['id']}"

    for action in ("pause", "resume"):
        await expect(await client.post(f"{path}/{action}", headers=auth("viewer", tenant.account_id)), 403)
        await expect(await client.post(f"{path}/{action}", headers=auth("owner", other.account_id)), 404)
    await expect(await client.post("/api/conversations/con_missing/pause", headers=auth()), 404)

    assert database.rows(settings, "SELECT * FROM conversation_state WHERE paused_until IS NOT NULL") == []
    await expect(await client.post(f"{path}/pause", headers=auth()), 200)  # the operator may


async def test_a_relay_conversation_cannot_be_paused(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hi"), 200)
    owner = auth("owner", tenant.account_id)
    [contact] = (await listing(client, owner))["conversations"]

    for action in ("pause", "resume"):
        body = await expect(await client.post(f"/api/conversations/{contact['id']}/{action}", headers=owner), 409)
        assert body["error"]["code"] == "conflict" and "relay" in body["error"]["message"]
    # The relay keeps answering.
    await expect(await relay(client, tenant, "still there?"), 200)


async def test_erasing_a_contact_removes_their_conversation_in_that_account_only(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    await expect(await relay(client, a, "my address is 1 Main St", user_id="same-person"), 200)
    await expect(await relay(client, b, "hello B", user_id="same-person"), 200)
    await expect(await relay(client, a, "someone else", user_id="other-person"), 200)
    owner = auth("owner", a.account_id)
    contact = next(c for c in (await listing(client, owner))["conversations"] if c["external_id"] == "same-person")
    path = f"/api/conversations/{contact['id']}"

    await expect(await client.delete(path, headers=auth("viewer", a.account_id)), 403)
    await expect(await client.delete(path, headers=auth("owner", b.account_id)), 404)
    erased = await expect(await client.delete(path, headers=owner), 200)

    assert erased["erased"]["contacts"] == 1 and erased["erased"]["messages"] == 2
    await expect(await client.get(path, headers=owner), 404)
    assert database.rows(settings, "SELECT * FROM messages WHERE content LIKE '%Main St%'") == []
    remaining = {c["external_id"] for c in (await listing(client, auth()))["conversations"]}
    assert remaining == {"same-person", "other-person"}  # B's customer of the same id, and A's other customer
    assert [c["account_id"] for c in (await listing(client, auth(), "?q=same-person"))["conversations"]] == [
        b.account_id
    ]
    await expect(await client.delete(path, headers=owner), 404)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
