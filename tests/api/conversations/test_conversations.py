"""The conversations API through the real path: list; search (any script, whatever its case; at most two at once,
beside reads rather than in front of them); read; pause and resume (human takeover); erase (one account's customer,
on one platform)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import (
    NOW_MS,
    NOW_S,
    PAGE_ID,
    PHONE_ID,
    PSID,
    deliver,
    fb_text,
    settled,
    until,
    wa_text,
)
from tests.support.clocks import SteppingClock
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay

CONVERSATIONS = "/api/conversations"
# A WhatsApp customer's wa_id (a phone number), which a business's own app may also use as its relay user id.
SHARED_ID = "15550001111"


async def listing(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    return await expect(await client.get(f"/api/conversations{query}", headers=headers), 200)


async def search(client: TestClient, headers: dict[str, str], q: str) -> list[str]:
    body = await expect(await client.get(CONVERSATIONS, params={"q": q}, headers=headers), 200)
    return [c["external_id"] for c in body["conversations"]]


def insert_messages(settings: Settings, contact_id: str, n: int) -> None:
    """A long conversation, written as the engine writes messages (a relay call writes two at a time)."""
    [(account_id, bot_id, count)] = database.rows(
        settings, "SELECT account_id, bot_id, message_count FROM contacts WHERE id = ?", (contact_id,)
    )
    database.insert(
        settings,
        "messages",
        (
            {
                "id": f"msg_bulk_{i}",
                "account_id": account_id,
                "bot_id": bot_id,
                "contact_id": contact_id,
                "seq": count + 1 + i,
                "role": "user",
                "content": f"Where is parcel number {i}?",
                "tokens": 9,
                "created_at": i,
            }
            for i in range(n)
        ),
    )


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


@pytest.fixture
async def whatsapp(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
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


async def test_search_finds_non_ascii_text_whatever_its_case(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "Bonjour", user_id="Émile"), 200)
    await expect(await relay(client, tenant, "Ich wohne in der Hauptstraße", user_id="crm-7"), 200)
    await expect(await relay(client, tenant, "hello", user_id="emile-ascii"), 200)
    owner = auth("owner", tenant.account_id)

    for q in ("Émile", "émile", "ÉMILE"):
        assert await search(client, owner, q) == ["Émile"], q
    # Unicode case folding on both sides: "ß" folds to "ss", so either spelling finds it.
    assert await search(client, owner, "HAUPTSTRASSE") == ["crm-7"]
    assert await search(client, owner, "hauptstraße") == ["crm-7"]


@pytest.fixture
async def long_conversation(client: TestClient, settings: Settings, fake_openai: FakeOpenAI) -> tuple[Tenant, str]:
    """An account whose one customer has 300,000 messages: a search for a word nobody wrote reads all of them."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hello", user_id="long-talker"), 200)
    [contact] = (await expect(await client.get(CONVERSATIONS, headers=auth()), 200))["conversations"]
    insert_messages(settings, contact["id"], 300_000)
    return tenant, contact["id"]


async def test_more_than_two_searches_at_once_are_told_to_retry(
    client: TestClient, long_conversation: tuple[Tenant, str]
) -> None:
    tenant, _ = long_conversation
    owner = auth("owner", tenant.account_id)

    async def one() -> tuple[int, Any, str | None]:
        response = await client.get(CONVERSATIONS, params={"q": "nobody wrote this"}, headers=owner)
        return response.status, await response.json(), response.headers.get("Retry-After")

    answers = await asyncio.gather(*(one() for _ in range(6)))

    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) >= 2 and set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer[0] == 429)
    assert refused[1]["error"]["code"] == "rate_limited" and refused[2] == "1"
    # The slots free as the searches end: the next one is answered.
    assert await search(client, owner, "nobody wrote this") == []


async def test_reading_a_conversation_does_not_wait_behind_searches(
    client: TestClient, long_conversation: tuple[Tenant, str]
) -> None:
    tenant, contact_id = long_conversation
    owner = auth("owner", tenant.account_id)
    finished: dict[str, float] = {}

    async def timed(name: str, path: str, **params: str) -> None:
        await expect(await client.get(path, params=params, headers=owner), 200)
        finished[name] = time.monotonic()

    searches = [asyncio.ensure_future(timed(f"search{n}", CONVERSATIONS, q="nobody wrote this")) for n in range(2)]
    await asyncio.sleep(0.05)  # both searches are reading by now
    await timed("read", f"{CONVERSATIONS}/{contact_id}", limit="5")
    await asyncio.gather(*searches)

    # On the main read connection the read would queue behind both scans of 300,000 messages.
    assert finished["read"] < min(finished["search0"], finished["search1"]), finished


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
    refused = await expect(await client.post(path, json={"minutes": None}, headers=owner), 400)
    assert refused["error"]["details"]["field"] == "minutes" and "null" in refused["error"]["message"]


async def test_pausing_a_paused_conversation_moves_its_end_without_a_second_takeover(
    whatsapp: tuple[TestClient, Tenant, Settings], fake_openai: FakeOpenAI
) -> None:
    client, tenant, settings = whatsapp
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "hello", ts=NOW_S))
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    path = f"{CONVERSATIONS}/{contact['id']}/pause"

    first = await expect(await client.post(path, json={"minutes": 5}, headers=owner), 200)
    second = await expect(await client.post(path, json={"minutes": 60}, headers=owner), 200)

    assert second["paused_until"] > first["paused_until"]
    [row] = database.rows(settings, "SELECT paused_until FROM conversation_state")
    assert 55 * 60_000 < row["paused_until"] - time.time() * 1000 <= 60 * 60_000
    takeovers = (await expect(await client.get("/api/dashboard/activity?kind=human_takeover", headers=owner), 200))[
        "activity"
    ]
    assert [t["detail"]["paused_minutes"] for t in takeovers] == [5]


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


async def test_a_conversation_erased_while_the_model_answers_keeps_nothing_of_that_turn(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    """The erasure wins: the reply written after it is not stored, the customer is told it conflicted (409), and
    the tokens held for the turn are given back, none charged."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "first question", user_id="leaving"), 200)
    used = database.quota_row(settings, tenant.account_id)["used_tokens"]
    owner = auth("owner", tenant.account_id)
    [contact] = (await listing(client, owner))["conversations"]
    fake_openai.latency = 0.5
    turn = asyncio.create_task(relay(client, tenant, "my card number is 4111", user_id="leaving"))
    await until(lambda: len(fake_openai.calls) == 2)  # the model is answering the second message
    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)
    refused = await expect(await turn, 409)
    assert refused["error"]["code"] == "conflict"
    assert database.rows(settings, "SELECT id FROM messages") == []
    assert database.rows(settings, "SELECT id FROM contacts") == []
    quota = database.quota_row(settings, tenant.account_id)
    assert (quota["used_tokens"], quota["reserved_tokens"]) == (used, 0)
    assert database.rows(settings, "SELECT id FROM quota_reservations") == []


async def test_erasing_a_relay_user_leaves_the_whatsapp_customer_with_the_same_id(
    whatsapp: tuple[TestClient, Tenant, Settings], fake_openai: FakeOpenAI
) -> None:
    client, tenant, settings = whatsapp
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.keep", "my order 42", wa_id=SHARED_ID, ts=NOW_S))
    await settled(settings)
    await expect(await relay(client, tenant, "erase me please", user_id=SHARED_ID), 200)
    owner = auth("owner", tenant.account_id)
    listed = (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    by_platform = {c["platform"]: c for c in listed}
    wa_path = f"{CONVERSATIONS}/{by_platform['whatsapp']['id']}"
    await expect(await client.post(f"{wa_path}/pause", json={"minutes": 30}, headers=owner), 200)

    erased = await expect(await client.delete(f"{CONVERSATIONS}/{by_platform['relay']['id']}", headers=owner), 200)

    assert erased["erased"] == {"contacts": 1, "messages": 2, "inbox_events": 0}
    kept = await expect(await client.get(wa_path, headers=owner), 200)
    assert [m["content"] for m in kept["messages"]] == ["my order 42", "You said: my order 42"]
    assert kept["conversation"]["paused"] is True  # the WhatsApp customer's takeover pause stays too
    [event] = database.rows(settings, "SELECT customer_id, event FROM inbox WHERE event_key = 'wamid.keep'")
    assert event["customer_id"] == SHARED_ID and "my order 42" in event["event"]
    assert [
        c["platform"] for c in (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    ] == ["whatsapp"]

    # Erasing the WhatsApp customer scrubs its inbox event and pause, on that platform.
    erased = await expect(await client.delete(wa_path, headers=owner), 200)
    assert erased["erased"] == {"contacts": 1, "messages": 2, "inbox_events": 1}
    assert database.rows(settings, "SELECT * FROM conversation_state WHERE customer_id = ?", (SHARED_ID,)) == []


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
